"""Resolve a recipe's input to the ordered list of shard URIs, and name each shard."""

from __future__ import annotations

import glob
import gzip
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from operators.io.layout import safe_segment
from operators.io.ledger import THREADS
from operators.io.storage import Storage, is_s3, join

CC_ROOT = "s3://commoncrawl/crawl-data"
CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
SHARD_SUFFIXES = (".gz",)


def crawl_listing(storage: Storage, crawl: str, fmt: str) -> list[str]:
    """Shard URIs of a Common Crawl crawl, from its ``warc.paths.gz`` / ``wet.paths.gz``."""
    if not CRAWL_RE.fullmatch(crawl):
        raise ValueError(f"input.crawl: {crawl!r} is not a crawl id like CC-MAIN-2024-22")
    raw = storage.read_bytes(join(CC_ROOT, crawl, f"{fmt}.paths.gz"))
    lines = gzip.GzipFile(fileobj=io.BytesIO(raw)).read().decode().split()
    return [join("s3://commoncrawl", line) for line in lines]


def parse_slice(spec: str | None) -> slice:
    """``"start:stop"`` (either side optional) as a slice."""
    if not spec:
        return slice(None)
    start, sep, stop = spec.partition(":")
    if not sep:
        raise ValueError(f"input.shards: {spec!r} is not start:stop")
    return slice(int(start) if start else None, int(stop) if stop else None)


def resolve_inputs(storage: Storage, paths: list[str], crawl: str | None, fmt: str,
                   shards: str | None, limit: int | None) -> list[str]:
    """Expand globs or a crawl id, then apply ``shards`` and ``limit``; raise if a glob matches nothing
    or a path (not a glob) does not exist."""
    if crawl:
        uris = crawl_listing(storage, crawl, fmt)
    else:
        uris = []
        for pattern in paths:
            found = storage.list(pattern)
            if not found:
                raise FileNotFoundError(f"input.paths: nothing matches {pattern!r}")
            folder = next((uri for uri in found if glob.has_magic(pattern) and os.path.isdir(uri)), None)
            if folder:  # read as a shard, it would fail once Ray runs
                raise ValueError(f"input.paths: {pattern!r} matches the folder {folder}; give a glob that matches "
                                 f"only files, like {join(os.path.dirname(pattern), '*.warc.gz')!r}")
            uris += found
        _check_literals(storage, [p for p in paths if not glob.has_magic(p)])
    uris = uris[parse_slice(shards)]
    return uris[:limit] if limit is not None else uris


def _check_literals(storage: Storage, paths: list[str]) -> None:
    """Each path given as is (not a glob: ``Storage.list`` returns it unasked) is a file that exists;
    s3:// URIs are asked of storage (a HEAD each, ``THREADS`` in flight), so a typo stops the job at start."""
    def problem(uri: str) -> Exception | None:
        if not is_s3(uri) and os.path.isdir(uri):
            return ValueError(f"input.paths: {uri} is a folder; give its files or a glob like "
                              f"{join(uri, '*.warc.gz')!r}")
        try:
            storage.stat(uri)
        except FileNotFoundError:
            return FileNotFoundError(f"input.paths: {uri} does not exist")
        except (OSError, ClientError, BotoCoreError) as err:
            return ValueError(f"input.paths: cannot read {uri}: {' '.join(str(err).split())}")
        return None

    if paths:
        with ThreadPoolExecutor(min(THREADS, len(paths))) as pool:
            found = next((err for err in pool.map(problem, paths) if err), None)
        if found:
            raise found


def shard_name(uri: str) -> str:
    """The file's base name less ``.gz`` (``x.warc`` and ``x.warc.wet`` stay apart): the shard's key.

    It names output files, so characters outside ``[A-Za-z0-9._-]`` and runs of dots become ``_``
    and a leading ``_``, ``.`` or ``-`` (hidden from dataset readers) is dropped.
    """
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    for suffix in SHARD_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", name)).lstrip("._-")[:200]
    return name if safe_segment(name) else "shard"


def shard_names(uris: list[str]) -> dict[str, str]:
    """Map shard name to URI; two inputs with the same name would overwrite each other, so refuse."""
    names: dict[str, str] = {}
    for uri in uris:
        name = shard_name(uri)
        if name in names:
            raise ValueError(f"input: {names[name]} and {uri} share the shard name {name!r}")
        names[name] = uri
    return names


def crawl_of(uri: str) -> str | None:
    match = CRAWL_RE.search(uri)
    return match.group(0) if match else None
