"""Compare-and-swap JSON documents in object storage: the sentinel's run registry, whose entries are leases.

On S3 a document is created with a conditional put (``If-None-Match: *``) and replaced only while its
ETag is still the one read (``If-Match``). On a local disk it is created with a hard link, which fails
if the name exists, and replaced under an exclusive ``flock``; its version is a hash of its bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from functools import lru_cache

import botocore.exceptions

from operators.io.storage import Storage, discard, is_s3, split_s3

TIMEOUT_S = 10  # per S3 request: a heartbeat must not hang past its lease


class Conflict(Exception):
    """Someone else created or changed the document first."""


@lru_cache(maxsize=8)
def s3_client(storage: Storage, timeout_s: float = TIMEOUT_S):
    """A signed boto3 S3 client for ``storage``'s endpoint, with short timeouts and few retries."""
    import boto3  # on first use, as in operators.io.storage: a local run's lock never needs it
    from botocore.config import Config as BotoConfig

    config = BotoConfig(connect_timeout=timeout_s, read_timeout=timeout_s,
                        retries={"mode": "standard", "max_attempts": 3})
    return boto3.client("s3", endpoint_url=storage.endpoint_url or None, region_name=storage.region, config=config)


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def _version(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def read(storage: Storage, uri: str) -> tuple[dict, str] | None:
    """(document, version), or None when there is none."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            got = s3_client(storage).get_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(got["Body"].read()), got["ETag"]
    try:
        with open(uri, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    return json.loads(raw), _version(raw)


def create(storage: Storage, uri: str, doc: dict) -> str:
    """Write ``doc`` if no document is there; return its version, or raise Conflict."""
    raw = _encode(doc)
    if is_s3(uri):
        return _put(storage, uri, doc, raw, IfNoneMatch="*")
    folder, name = os.path.split(os.path.abspath(uri))
    os.makedirs(folder, exist_ok=True)
    staging = _stage(folder, name, raw)
    try:
        os.link(staging, uri)
    except FileExistsError:
        raise Conflict(uri) from None
    finally:
        discard(staging)
    return _version(raw)


def replace(storage: Storage, uri: str, doc: dict, version: str) -> str:
    """Overwrite the document if it is still at ``version``; return the new version, or raise Conflict."""
    raw = _encode(doc)
    if is_s3(uri):
        return _put(storage, uri, doc, raw, IfMatch=version)
    folder, name = os.path.split(os.path.abspath(uri))
    with open(os.path.join(folder, f".{name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read(storage, uri)
        if current is None or current[1] != version:
            raise Conflict(uri)
        os.replace(_stage(folder, name, raw), uri)
    return _version(raw)


def _stage(folder: str, name: str, raw: bytes) -> str:
    staging = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")  # storage.STAGING_RE: swept if left
    with open(staging, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return staging


def _put(storage: Storage, uri: str, doc: dict, raw: bytes, **condition) -> str:
    bucket, key = split_s3(uri)
    try:
        return s3_client(storage).put_object(Bucket=bucket, Key=key, Body=raw, ContentType="application/json",
                                             **condition)["ETag"]
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise
    current = read(storage, uri)  # a retried put whose first try did land reads back as ours
    if current is not None and current[0] == doc:
        return current[1]
    raise Conflict(uri)
