"""One SQS long poll per triggerer for every waiting task: "this status.json was just written".

S3 notifies a queue whenever a key ending in status.json is created (infra/template.yaml,
localstack/init). The triggerer runs one shared stream per queue (Airflow's
``BaseEventTrigger.shared_stream_key``): a single ``ReceiveMessage`` that waits up to 20 s
serves all its waiting tasks, and each trigger wakes when its own key comes by. So a task is
seen finished within milliseconds of its status.json, at no S3 cost per task.

With several triggerers, a message can reach one that does not watch that key. It deletes
only messages for keys it watches (or that nobody claimed after ``MAX_RECEIVES`` receives);
the rest become visible again after the queue's visibility timeout, for the other
triggerers. A trigger never depends on a message: it still reads status.json now and then.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_plus

from airflow.providers.amazon.aws.hooks.sqs import SqsHook

WAIT_SECONDS = 20
MAX_RECEIVES = 3
WATCHED: Counter[tuple[str, str]] = Counter()
"""(bucket, status key) of every task this triggerer process waits for."""


@contextmanager
def watching(bucket: str, key: str) -> Iterator[None]:
    WATCHED[(bucket, key)] += 1
    try:
        yield
    finally:
        WATCHED[(bucket, key)] -= 1
        if WATCHED[(bucket, key)] <= 0:
            del WATCHED[(bucket, key)]


def written_keys(body: str) -> list[tuple[str, str]]:
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
    queue: str, aws_conn_id: str | None, region_name: str | None
) -> AsyncIterator[tuple[str, str]]:
    """Yield (bucket, key) for every status.json S3 reports written, forever."""
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
                if not keys or receives >= MAX_RECEIVES or any(written in WATCHED for written in keys):
                    done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
            if done:
                await sqs.delete_message_batch(QueueUrl=url, Entries=done)


async def open_stream(kwargs: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    """The shared stream for a LaunchedTaskTrigger's serialized kwargs."""
    async for written in receive_written_keys(kwargs["status_queue"], kwargs["aws_conn_id"], kwargs["region_name"]):
        yield written
