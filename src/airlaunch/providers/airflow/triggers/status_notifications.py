"""One SQS long poll per triggerer for every waiting task: "this status.json was just written".

S3 notifies a queue whenever a key ending in status.json is created (infra/template.yaml,
localstack/init). Each triggerer process runs one ``StatusListener`` per queue (its
``TriggererLoop`` holds them: airlaunch.providers.airflow.triggerer): a single
``ReceiveMessage`` that waits up to 20 s serves all its waiting tasks, and each trigger is
woken when its own key comes by. So a task is seen finished within milliseconds of its
status.json, at no S3 cost per task.

The listener lives as long as the triggerer's event loop, not as long as its tasks: a
cancelled long poll stays open at SQS, which hands it the next message, invisible for the
visibility timeout, so a listener that stopped with its last task (as Airflow 3.3's shared
trigger streams do when their last subscriber leaves) would lose every notification while
one task at a time runs.

With several triggerers (or a triggerer and a test), a message can reach one that does not
watch that key. A listener deletes only messages for keys it watches, and hands the others
back at once (visibility ``RELEASE_SECONDS``) for the other listeners; a message nobody
claimed for ``UNCLAIMED_SECONDS`` is deleted. A count of receives would not do: the wrong
listener can win every receive (with two listeners, one time in eight), and the notification
would be lost. A trigger never depends on a message: it still reads status.json now and then, and polls
every tick while the listener is ``degraded``. The listener never gives up: after an SQS
error it wakes every waiting trigger (to poll), then polls SQS again with a growing pause
(1 s to 30 s), and notifications resume when SQS answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote_plus

from airflow.providers.amazon.aws.hooks.sqs import SqsHook

from airlaunch.aws_clients import keep_connections

WAIT_SECONDS = 20
RELEASE_SECONDS = 1  # an unclaimed message is visible to the other listeners again after this
UNCLAIMED_SECONDS = 60  # and deleted once nobody claimed it for this long
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
    queue: str,
    aws_conn_id: str | None,
    region_name: str | None,
    claims: Callable[[Key], bool],
    answered: Callable[[], None] = lambda: None,
) -> AsyncIterator[Key]:
    """Yield (bucket, key) for every status.json S3 reports written, forever; delete what ``claims``,
    hand the rest back. ``answered`` is called after every receive SQS answered (with messages or without)."""
    hook = SqsHook(aws_conn_id=aws_conn_id, region_name=region_name)
    async with await hook.get_async_conn() as sqs:
        keep_connections(sqs)  # one connection for the receives and deletes, not one each (LocalStack's default)
        url = queue if "://" in queue else (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
        while True:
            response = await sqs.receive_message(
                QueueUrl=url,
                WaitTimeSeconds=WAIT_SECONDS,
                MaxNumberOfMessages=10,
                MessageSystemAttributeNames=["SentTimestamp"],
            )
            answered()
            done: list[dict[str, str]] = []
            handed_back: list[dict[str, str | int]] = []
            for message in response.get("Messages", []):
                keys = written_keys(message.get("Body", ""))
                for written in keys:
                    yield written
                sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                entry = {"Id": str(len(done) + len(handed_back)), "ReceiptHandle": message["ReceiptHandle"]}
                if not keys or any(claims(written) for written in keys) or time.time() - sent > UNCLAIMED_SECONDS:
                    done.append(entry)
                else:
                    handed_back.append({**entry, "VisibilityTimeout": RELEASE_SECONDS})
            if done:
                await sqs.delete_message_batch(QueueUrl=url, Entries=done)
            if handed_back:
                await sqs.change_message_visibility_batch(QueueUrl=url, Entries=handed_back)


class StatusListener:
    """The long poll of one queue in one event loop, and the tasks waiting on it."""

    def __init__(self, queue: str, aws_conn_id: str | None, region_name: str | None) -> None:
        self.waiters: dict[Key, set[asyncio.Event]] = {}
        self.failed: Exception | None = None  # the last SQS error, until SQS answers again
        self.restarts = 0
        self._source = (queue, aws_conn_id, region_name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"airlaunch-status-{queue}")

    @property
    def degraded(self) -> bool:
        """True while SQS fails: waiting triggers poll S3 every tick meanwhile."""
        return self.failed is not None

    @contextmanager
    def watch(self, bucket: str, key: str) -> Iterator[asyncio.Event]:
        """An event set when the key is reported written (or when the listener starts failing)."""
        event = asyncio.Event()
        self.waiters.setdefault((bucket, key), set()).add(event)
        try:
            yield event
        finally:
            events = self.waiters.get((bucket, key), set())
            events.discard(event)
            if not events:
                self.waiters.pop((bucket, key), None)

    def _answered(self) -> None:
        if self.failed is not None:
            log.info("status notifications are back (SQS answers again)")
        self.failed = None

    async def _run(self) -> None:
        pause = 1.0
        while True:
            try:
                async for written in receive_written_keys(*self._source, self.waiters.__contains__, self._answered):
                    pause = 1.0
                    for event in self.waiters.get(written, ()):
                        event.set()
            except Exception as exc:  # a broken queue costs latency, never a task
                if self.failed is None:
                    log.warning("status notifications failed (%s): the waiting tasks poll S3 meanwhile", exc)
                self.failed = exc
                for events in self.waiters.values():
                    for event in events:
                        event.set()
            self.restarts += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
