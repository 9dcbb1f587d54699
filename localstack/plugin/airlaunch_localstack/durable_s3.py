"""An S3 provider for LocalStack whose buckets and objects survive restarts.

localstack-core keeps S3 in memory only (``EphemeralS3ObjectStore``; persistence is a paid
extension), so every local result vanished with ``make down``, a crash or a reboot. This is
LocalStack's own S3 provider plus a write-through journal (``journal.Journal``, one SQLite
file at ``AIRLAUNCH_S3_STATE``): each successful call that creates or deletes an object or a
bucket is committed to the journal *before* its response leaves, so what a client was told
is stored stays stored through a stop, a kill -9 or a reboot. If the journal cannot be
written, the client gets a 503 (which AWS SDKs retry) instead of a false success. When the
provider loads, the journal is loaded back. Bucket settings (notifications, policies) are
not kept: LocalStack's init hooks set them again on every start.

Selected with ``PROVIDER_OVERRIDE_S3=airlaunch``; ``AIRLAUNCH_S3_SYNC`` (FULL, NORMAL) is the
journal's SQLite ``synchronous`` level.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any

from localstack.aws.api import RequestContext
from localstack.aws.api.s3 import NoSuchBucket
from localstack.aws.chain import HandlerChain
from localstack.aws.handlers import modify_service_response
from localstack.http import Response
from localstack.services.plugins import Service, aws_provider
from localstack.services.s3.models import S3Bucket, S3DeleteMarker
from localstack.services.s3.provider import S3Provider
from localstack.services.s3.utils import get_owner_for_account_id

from airlaunch_localstack.journal import ChunkReader, Journal

LOG = logging.getLogger(__name__)

_OBJECT_WRITES = {"PutObject", "CopyObject", "CompleteMultipartUpload", "PostObject", "DeleteObject", "DeleteObjects"}
_BUCKET_WRITES = {"CreateBucket", "DeleteBucket"}


class DurableS3Provider(S3Provider):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def on_after_init(self) -> None:
        super().on_after_init()
        started = time.monotonic()
        buckets, objects = self._restore()
        LOG.info(
            "airlaunch: restored %d bucket(s) and %d object(s) from the S3 journal in %.2f s",
            buckets,
            objects,
            time.monotonic() - started,
        )
        modify_service_response.append(self.service, self._journal_response)

    def on_before_stop(self) -> None:
        super().on_before_stop()
        self.journal.close()

    # -- load ---------------------------------------------------------------------------------
    def _restore(self) -> tuple[int, int]:
        objects = 0
        stored = self.journal.buckets()
        for entry in stored:
            store = self.get_store(entry.account_id, entry.region)
            bucket = store.buckets.get(entry.name)
            if bucket is None:
                owner = get_owner_for_account_id(entry.account_id)
                bucket = S3Bucket(name=entry.name, account_id=entry.account_id, bucket_region=entry.region, owner=owner)
                store.buckets[entry.name] = bucket
                store.global_bucket_map[entry.name] = entry.account_id
                self._storage_backend.create_bucket(entry.name)
            for key, meta in self.journal.objects(entry.name):
                s3_object = pickle.loads(meta)
                etag, checksum = s3_object.etag, s3_object.checksum_value  # a multipart ETag is not an MD5
                with self._storage_backend.open(entry.name, s3_object, mode="w") as target:
                    target.write(ChunkReader(self.journal.read(entry.name, key)))
                s3_object.etag, s3_object.checksum_value = etag, checksum
                bucket.objects.set(key, s3_object)
                objects += 1
        return len(stored), objects

    # -- write-through ------------------------------------------------------------------------
    def _journal_response(self, chain: HandlerChain, context: RequestContext, response: Response) -> None:
        operation = context.operation.name if context.operation else None
        if operation not in _OBJECT_WRITES and operation not in _BUCKET_WRITES:
            return
        if response.status_code >= 300:
            return
        request: dict[str, Any] = context.service_request or {}
        bucket = request.get("Bucket")
        if not bucket:
            return
        try:
            if operation in _BUCKET_WRITES:
                self._journal_bucket(context, bucket)
            else:
                for key in _written_keys(operation, request):
                    self._journal_object(context, bucket, key)
        except Exception as exc:  # never acknowledge what is not durable
            LOG.exception("airlaunch: could not journal %s on %s", operation, bucket)
            response.status_code = 503
            response.headers["Content-Type"] = "application/xml"
            response.set_response(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                f"<Message>local S3 could not store the change durably: {exc}</Message></Error>"
            )

    def _journal_bucket(self, context: RequestContext, name: str) -> None:
        try:
            _, bucket = self._get_cross_account_bucket(context, name)
        except NoSuchBucket:
            self.journal.delete_bucket(name)
            return
        self.journal.put_bucket(name, bucket.bucket_account_id, bucket.bucket_region)

    def _journal_object(self, context: RequestContext, bucket_name: str, key: str) -> None:
        try:
            _, bucket = self._get_cross_account_bucket(context, bucket_name)
        except NoSuchBucket:
            return
        s3_object = bucket.objects.get(key)
        if s3_object is None or isinstance(s3_object, S3DeleteMarker):
            self.journal.delete_object(bucket_name, key)
            return
        self.journal.put_bucket(bucket_name, bucket.bucket_account_id, bucket.bucket_region)
        with self._storage_backend.open(bucket_name, s3_object, mode="r") as source:
            self.journal.put_object(bucket_name, key, pickle.dumps(s3_object), iter(source))


def _written_keys(operation: str, request: dict[str, Any]) -> list[str]:
    if operation == "DeleteObjects":
        return [entry["Key"] for entry in (request.get("Delete") or {}).get("Objects", [])]
    key = request.get("Key")
    return [key] if key else []


@aws_provider(api="s3", name="airlaunch")
def s3_airlaunch() -> Service:
    path = os.environ.get("AIRLAUNCH_S3_STATE")
    if not path:
        raise RuntimeError("PROVIDER_OVERRIDE_S3=airlaunch needs AIRLAUNCH_S3_STATE: the journal file to keep S3 in")
    return Service.for_provider(DurableS3Provider(Journal(path, os.environ.get("AIRLAUNCH_S3_SYNC", "FULL"))))
