"""The result cache's key: everything that can change a try's result, and nothing else.

A key is the SHA-256 of one canonical JSON document (sorted keys, no spaces, UTF-8), :func:`key_inputs`:

* ``image``: the image by content (``sha256:...``), as the platform resolves it at launch (Docker's image
  id; on ECS the ECR digest of the task definition's image), never a tag, which can move;
* ``command`` or ``notebook`` and ``architecture``: what the catalog entry runs, and on what;
* ``env``: the entry's env with the launch's env overrides, every value;
* ``secrets``: each secret's variable and where it lives (service, name, JSON key), never its value;
* ``params``: the effective params (the DAG's params and the task's own, upstream values included), where
  every string that names an object of a try in the results bucket (``s3://<bucket>/<root>/...`` or the bare
  key, as XCom's ``airlaunch.result_keys`` gives them) counts by that object's ETag, its content, not by its
  key, which holds the run id: an upstream task that ran again and wrote the same bytes changes nothing;
* ``dag_id``, ``task_id``, ``map_index``: where the try sits in its DAG; the runtime gives every task its
  identity (``run`` in params.yaml), and a task may use it (task_one's result says its task_id);
* ``task`` and the key's own ``version``.

Never in it: the run id, the try number, the task-instance id (what makes a run a new run), cpu, memory and
timeout (they decide whether a try ends, not what a finished one returns), the launcher's own AWS
environment. Anything a task reads outside its params (another bucket, a database, the network, the clock)
is not in it either: such a task must not be cached, or must be given a version or date in its params.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from airlaunch.aws_errors import is_missing
from airlaunch.catalog import TaskSpec
from airlaunch.protocol import LaunchRequest, identity_of_prefix

KEY_VERSION = 1
S3_CONTENT = "airlaunch:s3-etag"  # a param that named a try's object stands for that object's content
_MAX_REFERENCES = 100  # objects resolved per launch; a launch naming more is not cached (no key)


class NoKey(Exception):
    """This launch has no cache key (too many objects to resolve, one that cannot be read now): run it."""


def canonical(document: Any) -> str:
    """One spelling for one document: sorted keys, no spaces, no NaN."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class CacheKey:
    key: str  # SHA-256 hex of the canonical inputs
    inputs: dict[str, Any]  # what it holds (logged; docs/cache.md)


def secret_names(spec: TaskSpec) -> dict[str, dict[str, Any]]:
    """Each secret's variable and where its value lives (never the value)."""
    refs = getattr(spec, "secrets", None) or {}
    return {str(env): {k: getattr(ref, k, None) for k in ("service", "name", "json_key")} for env, ref in refs.items()}


def key_inputs(request: LaunchRequest, spec: TaskSpec, image: str, params: dict[str, Any]) -> dict[str, Any]:
    """The document the key hashes; ``spec`` with the launch's overrides, ``params`` with S3 objects resolved."""
    identity = request.identity
    return {
        "version": KEY_VERSION,
        "task": spec.name,
        "image": image,
        "architecture": spec.architecture,
        "command": list(spec.command),
        "notebook": spec.notebook,
        "env": dict(spec.env),
        "secrets": secret_names(spec),
        "params": params,
        "dag_id": identity.dag_id,
        "task_id": identity.task_id,
        "map_index": identity.map_index,
    }


def cache_key(request: LaunchRequest, spec: TaskSpec, image: str, params: dict[str, Any]) -> CacheKey:
    inputs = key_inputs(request, spec, image, params)
    return CacheKey(hashlib.sha256(canonical(inputs).encode()).hexdigest(), inputs)


class ObjectResolver:
    """Replaces, anywhere in params, a string naming an object of a try in ``bucket`` under ``root`` by
    ``{"airlaunch:s3-etag": <its ETag>}`` (one HEAD each). A string naming no object there stays as it is."""

    def __init__(self, s3: Any, bucket: str, root: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.root = root.strip("/")
        self.looked_up = 0

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, str):
            key = self.try_object(value)
            if key is not None:
                etag = self._etag(key)
                return {S3_CONTENT: etag} if etag is not None else value
        return value

    def try_object(self, text: str) -> str | None:
        """The key ``text`` names if it is a file of a try in the results layout of this bucket, else None."""
        key = text.removeprefix(f"s3://{self.bucket}/")
        if key == text and text.startswith("s3://"):
            return None  # another bucket: not the launcher's to read
        if self.root and not key.startswith(f"{self.root}/"):
            return None
        folder, _, name = key.rpartition("/")
        if not name or ".." in key or identity_of_prefix(folder + "/") is None:
            return None
        return key

    def _etag(self, key: str) -> str | None:
        self.looked_up += 1
        if self.looked_up > _MAX_REFERENCES:
            raise NoKey(f"the params name more than {_MAX_REFERENCES} objects of earlier tries")
        try:
            return str(self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise NoKey(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
