"""One SQS long poll per triggerer for every waiting task: "this status.json was just written".

S3 notifies a queue whenever a key ending in status.json is created (infra/template.yaml,
localstack/init). Each triggerer process runs one ``StatusListener`` per queue: a single
``ReceiveMessage`` that waits up to 20 s serves all its waiting tasks, and each trigger is
woken when its own key comes by. So a task is seen finished within milliseconds of its
status.json, at no S3 cost per task.

The listener lives as long as the triggerer's event loop, not as long as its tasks. (Airflow
3.3's shared trigger streams stop their poll when the last subscriber leaves; a cancelled
long poll stays open at SQS, which hands it the next message, invisible for the visibility
timeout: with one task at a time every notification was lost that way.)

With several triggerers, a message can reach one that does not watch that key. A listener
deletes only messages for keys it watches (or that nobody claimed after ``MAX_RECEIVES``
receives); the rest become visible again after the queue's visibility timeout, for the
other triggerers. A trigger never depends on a message: it still reads status.json now and
then, and polls as before when the listener fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote_plus

from airflow.providers.amazon.aws.hooks.sqs import SqsHook

WAIT_SECONDS = 20
MAX_RECEIVES = 3
Key = tuple[str, str]  # (bucket, key)

log = logging.getLogger(__name__)


def written_keys(body: str) -> list[Key]:
    """(bucket, key) of each object an S3 event notification reports created (keys arrive URL-encoded)."""
    try:
        records = json.loads(body).get("Records") or []
    except (ValueError, AttributeError):
        return []
    return [
        (record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"]))
        for record in records
        if record.get("eventName", "").startswith("ObjectCreated") and "s3" in record
    ]


async def receive_written_keys(
    queue: str, aws_conn_id: str | None, region_name: str | None, claims: Callable[[Key], bool]
) -> AsyncIterator[Key]:
    """Yield (bucket, key) for every status.json S3 reports written, forever; delete what ``claims``."""
    hook = SqsHook(aws_conn_id=aws_conn_id, region_name=region_name)
    async with await hook.get_async_conn() as sqs:
        url = queue if "://" in queue else (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
        while True:
            response = await sqs.receive_message(
                QueueUrl=url,
                WaitTimeSeconds=WAIT_SECONDS,
                MaxNumberOfMessages=10,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            done: list[dict[str, str]] = []
            for message in response.get("Messages", []):
                keys = written_keys(message.get("Body", ""))
                for written in keys:
                    yield written
                receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                if not keys or receives >= MAX_RECEIVES or any(claims(written) for written in keys):
                    done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
            if done:
                await sqs.delete_message_batch(QueueUrl=url, Entries=done)


class StatusListener:
    """The long poll of one queue in one event loop, and the tasks waiting on it."""

    def __init__(self, queue: str, aws_conn_id: str | None, region_name: str | None) -> None:
        self.waiters: dict[Key, set[asyncio.Event]] = {}
        self.failed: Exception | None = None
        source = receive_written_keys(queue, aws_conn_id, region_name, self.waiters.__contains__)
        self._task = asyncio.get_running_loop().create_task(self._run(source), name=f"airlaunch-status-{queue}")

    @contextmanager
    def watch(self, bucket: str, key: str) -> Iterator[asyncio.Event]:
        """An event set when the key is reported written (or when the listener fails)."""
        event = asyncio.Event()
        if self.failed is not None:
            event.set()
        self.waiters.setdefault((bucket, key), set()).add(event)
        try:
            yield event
        finally:
            events = self.waiters.get((bucket, key), set())
            events.discard(event)
            if not events:
                self.waiters.pop((bucket, key), None)

    async def _run(self, source: AsyncIterator[Key]) -> None:
        try:
            async for written in source:
                for event in self.waiters.get(written, ()):
                    event.set()
        except Exception as exc:  # a broken queue costs latency, never a task
            log.warning("status notifications stopped (%s): the waiting tasks poll S3 instead", exc)
            self.failed = exc
            for events in self.waiters.values():
                for event in events:
                    event.set()


_LISTENERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, str | None], StatusListener]
]
_LISTENERS = weakref.WeakKeyDictionary()


def listener(queue: str, aws_conn_id: str | None, region_name: str | None) -> StatusListener:
    """This event loop's listener for the queue; a new one after a failure (the next task retries)."""
    listeners = _LISTENERS.setdefault(asyncio.get_running_loop(), {})
    key = (queue, aws_conn_id, region_name)
    current = listeners.get(key)
    if current is None or current.failed is not None:
        current = listeners[key] = StatusListener(queue, aws_conn_id, region_name)
    return current
