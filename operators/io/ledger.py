"""Which shards a re-run must do: those without a ledger entry, and those whose input changed since.

A ledger entry records the input's size and ETag (or mtime) as it was read. When the input now
differs (a truncated file replaced by the whole one), the old entry and the outputs it lists
are removed, so the shard is redone and no stale output is left beside the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from operators.io.storage import Storage

THREADS = 32  # metadata requests in flight on the driver


def _changed(storage: Storage, ledger: str, uri: str) -> bool:
    entry = json.loads(storage.read_bytes(ledger))
    if entry.get("input") == storage.stat(uri):
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
