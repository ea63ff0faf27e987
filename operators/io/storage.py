"""Object-storage access: streaming reads (smart-open + boto3) and atomic writes (pyarrow.fs).

``s3://`` URIs and local paths are handled alike. Common Crawl's public bucket is read
anonymously over its HTTPS mirror (``data.commoncrawl.org``) when no credentials are wanted,
since the bucket refuses unsigned S3 requests.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import io
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, fields
from functools import cached_property
from typing import IO
from urllib.parse import urlparse

import botocore.exceptions
import pyarrow.fs as pafs
import requests

from operators.io.ranged import InputChanged, RangeReader

CC_BUCKET = "commoncrawl"
STAGING_RE = re.compile(r"\..+\.tmp-[0-9a-f]{32}")
CC_HTTPS = "https://data.commoncrawl.org/"
UPLOAD_PART = 64 << 20  # S3 outputs up to this size are one PUT; larger ones go up in parts of it


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


class NoSpace(RuntimeError):
    """A write failed for want of space (ENOSPC, or a quota's EDQUOT): ``no space left on <where>``."""

    def __init__(self, where: str):
        super().__init__(f"no space left on {where}")


def full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or a quota on it) is full."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def discard(path: str) -> None:
    """Remove a local staging file if it is still there."""
    if os.path.exists(path):
        os.remove(path)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


@dataclass(frozen=True)
class Storage:
    """Where and how to reach object storage; picklable, so it travels to Ray workers."""

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool | None = None  # None: anonymous for the public Common Crawl bucket only
    retries: int = 5  # per request, and re-opens of a dropped input stream at its last good offset
    retry_backoff_s: float = 1.0  # first wait between stream re-opens; doubles each time

    def __getstate__(self) -> dict:
        """Pickle the settings only; clients and filesystems are rebuilt where the object lands."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def anonymous_for(self, uri: str) -> bool:
        """Whether ``uri`` is read without credentials (Common Crawl's public bucket on AWS, unless set)."""
        if self.anonymous is not None:
            return self.anonymous
        return is_s3(uri) and split_s3(uri)[0] == CC_BUCKET and self.endpoint_url is None

    def public_crawl(self, uri: str) -> bool:
        """Whether ``uri`` is Common Crawl's own, read anonymously (over its HTTPS mirror; never rewritten)."""
        return self.anonymous_for(uri) and split_s3(uri)[0] == CC_BUCKET

    @cached_property
    def _client(self):
        return self._make_client(signed=True)

    @cached_property
    def _unsigned_client(self):
        return self._make_client(signed=False)

    def _make_client(self, signed: bool):
        import boto3  # imported on first use: a fifth of a second off every worker's start on local files
        from botocore import UNSIGNED
        from botocore.config import Config as BotoConfig

        config = BotoConfig(retries={"mode": "adaptive", "max_attempts": self.retries + 1},
                            signature_version=None if signed else UNSIGNED)
        return boto3.client("s3", endpoint_url=self.endpoint_url or None, region_name=self.region,
                            config=config)

    def open_read(self, uri: str) -> IO[bytes]:
        """A streaming binary reader; nothing is downloaded to disk first."""
        if not is_s3(uri):
            return open(uri, "rb")
        import smart_open  # imported on first use, as boto3

        if self.public_crawl(uri):
            return smart_open.open(CC_HTTPS + split_s3(uri)[1], "rb", compression="disable")
        return smart_open.open(uri, "rb", compression="disable", transport_params={"client": self.client_for(uri)})

    def stat(self, uri: str) -> dict:
        """The input's identity for the ledger: ``size`` and ``etag`` (S3, HTTP) or ``mtime_ns`` (local)."""
        if not is_s3(uri):
            info = os.stat(uri)
            return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        if self.public_crawl(uri):
            response = requests.head(CC_HTTPS + split_s3(uri)[1], timeout=60, allow_redirects=True)
            if response.status_code == 404:
                raise FileNotFoundError(uri)
            response.raise_for_status()
            return {"size": int(response.headers["Content-Length"]), "etag": response.headers.get("ETag")}
        bucket, key = split_s3(uri)
        try:
            head = self.client_for(uri).head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(uri) from None
            raise
        return {"size": head["ContentLength"], "etag": head.get("ETag")}

    def reader(self, uri: str, identity: dict, start: int = 0) -> RangeReader:
        """A sequential reader of ``uri`` (as ``stat`` saw it) from byte ``start`` that resumes at its offset
        after a dropped connection and fails if the object changes meanwhile."""
        return RangeReader(uri, lambda offset: self._open_at(uri, offset, identity), identity["size"],
                           self.retries, self.retry_backoff_s, start)

    def client_for(self, uri: str):
        """The boto3 S3 client for ``uri`` (unsigned where :meth:`anonymous_for`)."""
        return self._unsigned_client if self.anonymous_for(uri) else self._client

    def _open_at(self, uri: str, offset: int, identity: dict) -> IO[bytes]:
        if offset >= identity["size"]:
            return io.BytesIO()
        if not is_s3(uri):
            f = open(uri, "rb")
            if os.fstat(f.fileno()).st_mtime_ns != identity["mtime_ns"]:
                f.close()
                raise InputChanged(f"{uri} changed while it was being read")
            f.seek(offset)
            return f
        etag = identity.get("etag")
        if self.public_crawl(uri):
            headers = {"Range": f"bytes={offset}-", **({"If-Match": etag} if etag else {})}
            response = requests.get(CC_HTTPS + split_s3(uri)[1], headers=headers, stream=True, timeout=(30, 120))
            if response.status_code == 412:
                raise InputChanged(f"{uri} changed while it was being read")
            if response.status_code != 206:
                response.raise_for_status()
                raise ConnectionError(f"{uri}: range request answered {response.status_code}, not 206")
            return response.raw
        bucket, key = split_s3(uri)
        try:
            return self.client_for(uri).get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-",
                                                    **({"IfMatch": etag} if etag else {}))["Body"]
        except botocore.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412"):
                raise InputChanged(f"{uri} changed while it was being read") from None
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(uri) from None
            raise

    def list(self, pattern: str) -> list[str]:
        """Expand a glob (``*``, ``?``, ``[]``) over local paths or an S3 prefix, sorted."""
        if not is_s3(pattern):
            return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not glob.has_magic(pattern):
            return [pattern]
        bucket, key = split_s3(pattern)
        prefix = key[: min(key.find(c) for c in "*?[" if c in key)]
        client = self.client_for(pattern)
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])  # less folder markers
                      if fnmatch.fnmatchcase(o["Key"], key) and not o["Key"].endswith("/")]
        return sorted(found)

    @cached_property
    def _s3fs(self) -> pafs.S3FileSystem:
        kwargs = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.retries + 1)}
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
        if self.region:
            kwargs["region"] = self.region
        return pafs.S3FileSystem(**kwargs)

    def filesystem(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and in-filesystem path for writing ``uri``."""
        if is_s3(uri):
            bucket, key = split_s3(uri)
            return self._s3fs, f"{bucket}/{key}"
        return pafs.LocalFileSystem(), os.path.abspath(uri)

    def exists(self, uri: str) -> bool:
        fs, path = self.filesystem(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self, uri: str) -> bytes:
        with self.open_read(uri) as f:
            return f.read()

    def staging_path(self, uri: str) -> str:
        """A local file to write ``uri``'s content to before :meth:`commit` publishes it."""
        if is_s3(uri):
            fd, path = tempfile.mkstemp(prefix="cc-refinery-", suffix=".part")
            os.close(fd)
            return path
        folder, name = os.path.split(os.path.abspath(uri))
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")  # hidden from dataset readers (STAGING_RE)

    def sweep_staging(self, uri: str) -> int:
        """Remove the staging files a killed run left under local folder ``uri``; return how many.

        (S3 outputs stage in local temporary files, so nothing of theirs is left in the bucket.)
        """
        if is_s3(uri) or not os.path.isdir(uri):
            return 0
        swept = 0
        for folder, _, names in os.walk(uri):
            for name in names:
                if STAGING_RE.fullmatch(name):
                    os.remove(os.path.join(folder, name))
                    swept += 1
        return swept

    def commit(self, staging: str, uri: str) -> None:
        """Publish a staged file whole: a local rename, or an S3 upload that is visible only once complete."""
        try:
            if is_s3(uri):
                from boto3.exceptions import S3UploadFailedError
                from boto3.s3.transfer import TransferConfig

                # boto3's managed transfer: one PUT under the threshold (most outputs), a multipart upload above
                # it; pyarrow's stream made every file a multipart upload (three requests, two at the PUT price)
                bucket, key = split_s3(uri)
                try:
                    self.client_for(uri).upload_file(staging, bucket, key, Config=TransferConfig(
                        multipart_threshold=UPLOAD_PART, multipart_chunksize=UPLOAD_PART))
                except S3UploadFailedError as err:  # an OSError, as a failed write is everywhere else
                    raise OSError(f"{uri}: {err.__context__ or err}") from None
            else:
                os.replace(staging, uri)
        finally:
            discard(staging)

    def write_atomic(self, uri: str, write) -> None:
        """Call ``write(binary_file)`` so that ``uri`` appears whole or not at all; a full disk raises
        :class:`NoSpace` naming ``uri`` (or, for S3, the local folder it is staged in)."""
        staging = self.staging_path(uri)
        try:
            with open(staging, "wb") as out:
                write(out)
            self.commit(staging, uri)
        except BaseException as err:
            discard(staging)
            if full(err):
                raise NoSpace(f"{os.path.dirname(staging)} (staging {uri})" if is_s3(uri) else uri) from None
            raise

    def write_text(self, uri: str, text: str) -> None:
        self.write_atomic(uri, lambda out: out.write(text.encode()))

    def delete(self, uri: str) -> None:
        """Remove one file; on S3 with boto3, as pyarrow would leave a folder marker behind."""
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self.client_for(uri).delete_object(Bucket=bucket, Key=key)
        else:
            os.remove(uri)

    def delete_tree(self, uri: str) -> None:
        """Remove a folder and everything under it (nothing if it does not exist)."""
        if is_s3(uri):
            for path in self.walk(uri, ""):
                self.delete(path)
        elif os.path.isdir(uri):
            shutil.rmtree(uri)

    def walk(self, uri: str, suffix: str) -> list[str]:
        """Every file under ``uri`` (recursively) ending in ``suffix``, skipping ``_``-prefixed names."""
        fs, path = self.filesystem(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        scheme = "s3://" if is_s3(uri) else ""
        found = []
        for info in infos:
            relative = info.path[len(path):].strip("/")
            if info.type == pafs.FileType.File and info.path.endswith(suffix) and not any(
                    part.startswith(("_", ".")) for part in relative.split("/")):
                found.append(scheme + info.path)
        return sorted(found)

    def listdir(self, uri: str) -> list[str]:
        """Base names of the files directly under ``uri`` (empty if it does not exist)."""
        fs, path = self.filesystem(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
