"""Which shards a re-run must do: those without a ledger entry, and those whose input changed since.

A ledger entry records the input's size and ETag (or mtime) as it was read. When the input now
differs (a truncated file replaced by the whole one), the old entry and the outputs it lists
are removed, so the shard is redone and no stale output is left beside the new one.

Fencing: a run the sentinel started carries its lease (a registry entry) and attempt number in
``CC_REFINERY_LEASE`` / ``CC_REFINERY_ATTEMPT``; :func:`commit_entry` tags the entry with the attempt
and refuses (:class:`StaleAttempt`) once the lease holds a newer attempt.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from operators.io.storage import Storage, join

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


def to_do(storage: Storage, names: dict[str, str], ledger_of: Callable[[str], str],
          recorded: set[str]) -> tuple[list[str], list[str]]:
    """(shards to do, in input order; those among them redone because their input changed).

    ``names`` maps shard names to input URIs, ``ledger_of(name)`` is a shard's ledger entry and
    ``recorded`` the names that have one (from one listing, not a request per shard).
    """
    done_before = [name for name in names if name in recorded]
    with ThreadPoolExecutor(THREADS) as pool:
        changed = dict(zip(done_before, pool.map(lambda n: _changed(storage, ledger_of(n), names[n]), done_before),
                           strict=True))
    return ([name for name in names if name not in recorded or changed[name]],
            [name for name in done_before if changed[name]])


def pending(storage: Storage, paths: dict[str, str], output: str, logger: logging.Logger) -> tuple[list[str], str]:
    """(the shards of ``paths`` left to do, the ledger folder ``<output>/_ledger``), after sweeping the staging
    files a killed run left under ``output``; says how many in the job's log."""
    storage.sweep_staging(output)
    ledger = join(output, "_ledger")
    recorded = {p[len(ledger) + 1:].removesuffix(".json") for p in storage.walk(ledger, ".json")}
    todo, changed = to_do(storage, paths, lambda k: join(ledger, f"{k}.json"), recorded)
    logger.info("%d shards: %d done before, %d to do (%d redone: input changed)", len(paths), len(paths) - len(todo),
                len(todo), len(changed))
    return todo, ledger
