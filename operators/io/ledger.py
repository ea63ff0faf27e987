"""Which shards a re-run must do: those without a ledger entry, and those whose input changed since.

A ledger entry records the input's size and ETag (or mtime) as it was read. When the input now
differs (a truncated file replaced by the whole one), the old entry and the outputs it lists
are removed, so the shard is redone and no stale output is left beside the new one.

A re-run asks storage for listings only, not a request per shard: the modification times of the
entries and of the inputs come from listing their folders (1,000 keys a request on S3), and only an
entry no newer than its input (whole seconds) is read and its input's identity asked for. Files of
Common Crawl's public bucket read anonymously are published once and never rewritten: not asked
again. An input rewritten after its shard's read ended but before its entry was written is not seen
(the read itself fails on a change, through the ETag or mtime it started with).

Fencing: a run the sentinel started carries its lease (a registry entry) and attempt number in
``CC_REFINERY_LEASE`` / ``CC_REFINERY_ATTEMPT``; :func:`commit_entry` tags the entry with the attempt
and refuses (:class:`StaleAttempt`) once the lease holds a newer attempt.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from operators.io.storage import Storage, is_s3, join, split_s3

log = logging.getLogger("cc_refinery.ledger")

THREADS = 32  # metadata requests in flight on the driver
LEASE_ENV, ATTEMPT_ENV = "CC_REFINERY_LEASE", "CC_REFINERY_ATTEMPT"


class StaleAttempt(RuntimeError):
    """A newer attempt of this run holds the lease: this one must not commit anything."""


def check_fence(storage: Storage) -> int | None:
    """This run's attempt (None when it was not started under a lease); raise StaleAttempt if superseded."""
    lease = os.environ.get(LEASE_ENV)
    if not lease:
        return None
    attempt = int(os.environ[ATTEMPT_ENV])
    if not storage.exists(lease):
        raise StaleAttempt(f"attempt {attempt} may not commit: its lease {lease} is gone")
    holder = json.loads(storage.read_bytes(lease))["attempt"]
    if holder > attempt:
        raise StaleAttempt(f"attempt {attempt} was superseded by attempt {holder} ({lease}); not committed")
    return attempt


def commit_entry(storage: Storage, uri: str, entry: dict) -> dict:
    """Write a shard's ledger entry (after its outputs), tagged with this run's attempt, unless superseded."""
    attempt = check_fence(storage)
    if attempt is not None:
        entry = {**entry, "attempt": attempt}
    storage.write_text(uri, json.dumps(entry, indent=1))
    return entry


def _changed(storage: Storage, ledger: str, uri: str) -> bool:
    entry = json.loads(storage.read_bytes(ledger))
    try:
        current = storage.stat(uri)
    except FileNotFoundError:  # listed, then deleted: what its finished run wrote stands
        log.warning("%s is gone since it was listed; its finished output is kept", uri)
        return False
    if entry.get("input") == current:
        return False
    storage.delete(ledger)
    for output in (entry.get("outputs") or {}).values():
        if output and storage.exists(output):
            storage.delete(output)
    return True


def modified(storage: Storage, uris: Iterable[str]) -> dict[str, float | None]:
    """Each existing file's modification time in whole seconds (None: Common Crawl's, never rewritten), from
    one listing per folder on S3 (from just before its first key to its last) and ``os.stat`` on local paths."""
    found: dict[str, float | None] = {}
    folders: dict[tuple[str, str], list[str]] = defaultdict(list)
    for uri in uris:
        if not is_s3(uri):
            if os.path.isfile(uri):
                found[uri] = float(os.stat(uri).st_mtime_ns // 1_000_000_000)
        elif storage.public_crawl(uri):
            found[uri] = None
        else:
            bucket, key = split_s3(uri)
            folders[(bucket, key.rpartition("/")[0])].append(key)
    for (bucket, folder), keys in folders.items():
        wanted, last = set(keys), max(keys)
        pages = storage.client_for(f"s3://{bucket}").get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{folder}/" if folder else "", StartAfter=min(keys)[:-1])
        for page in pages:  # paginate lazily: stop past the last key asked for
            contents = page.get("Contents", [])
            found.update({f"s3://{bucket}/{o['Key']}": float(math.floor(o["LastModified"].timestamp()))
                          for o in contents if o["Key"] in wanted})
            if not contents or contents[-1]["Key"] >= last:
                break
    return found


def to_do(storage: Storage, names: dict[str, str], ledger_of: Callable[[str], str],
          recorded: set[str]) -> tuple[list[str], list[str]]:
    """(shards to do, in input order; those among them redone because their input changed).

    ``names`` maps shard names to input URIs, ``ledger_of(name)`` is a shard's ledger entry and
    ``recorded`` the names that have one (from one listing, not a request per shard). Only entries no newer
    than their input are read (see the module's docstring).
    """
    done_before = [name for name in names if name in recorded]
    entries = modified(storage, (ledger_of(n) for n in done_before))
    inputs = modified(storage, (names[n] for n in done_before))
    suspects = [n for n in done_before if inputs.get(names[n], math.inf) is not None
                and inputs.get(names[n], math.inf) >= entries.get(ledger_of(n), -math.inf)]
    with ThreadPoolExecutor(THREADS) as pool:
        changed = {n for n, c in zip(suspects, pool.map(lambda n: _changed(storage, ledger_of(n), names[n]), suspects),
                                     strict=True) if c}
    return [name for name in names if name not in recorded or name in changed], [n for n in done_before if n in changed]


def recorded(storage: Storage, ledger: str) -> set[str]:
    """The keys (``<crawl>/<shard>``) with an entry under the ledger folder ``ledger``, from one listing; a
    relative local folder is read as ``Storage.walk`` gives its files, absolute."""
    _, inner = storage.filesystem(ledger)
    base = ("s3://" + inner if is_s3(ledger) else inner).rstrip("/")
    return {p[len(base) + 1:].removesuffix(".json") for p in storage.walk(ledger, ".json")}


def read_entries(storage: Storage, uris: list[str]) -> list[dict]:
    """The ledger entries at ``uris``, in order, ``THREADS`` requests in flight."""
    if not uris:
        return []
    with ThreadPoolExecutor(min(THREADS, len(uris))) as pool:
        return list(pool.map(lambda uri: json.loads(storage.read_bytes(uri)), uris))


def finished(storage: Storage, ledger: str, keys: Iterable[str]) -> dict[str, dict]:
    """The entries under the ledger folder ``ledger`` of those of ``keys`` that have one, in the order of
    ``keys``: one listing, then a read of each entry (``THREADS`` in flight), no request for a key without one."""
    have = recorded(storage, ledger)
    done = [k for k in keys if k in have]
    return dict(zip(done, read_entries(storage, [join(ledger, f"{k}.json") for k in done]), strict=True))


def pending(storage: Storage, paths: dict[str, str], output: str, logger: logging.Logger) -> tuple[list[str], str]:
    """(the shards of ``paths`` left to do, the ledger folder ``<output>/_ledger``), after sweeping the staging
    files a killed run left under ``output``; says how many in the job's log."""
    storage.sweep_staging(output)
    ledger = join(output, "_ledger")
    todo, changed = to_do(storage, paths, lambda k: join(ledger, f"{k}.json"), recorded(storage, ledger))
    logger.info("%d shards: %d done before, %d to do (%d redone: input changed)", len(paths), len(paths) - len(todo),
                len(todo), len(changed))
    return todo, ledger
