"""Which shards a re-run must do: those without a ledger entry, and those whose input changed since.

A ledger entry records the input's size and ETag (or mtime) as it was read. When the input now
differs (a truncated file replaced by the whole one), the old entry and the outputs it lists
are removed, so the shard is redone and no stale output is left beside the new one.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from operators.io.layout import Layout
from operators.io.storage import Storage

THREADS = 32  # metadata requests in flight on the driver


def _changed(storage: Storage, layout: Layout, name: str, uri: str) -> bool:
    entry = json.loads(storage.read_bytes(layout.ledger(name)))
    if entry.get("input") == storage.stat(uri):
        return False
    storage.delete(layout.ledger(name))
    for output in (entry.get("outputs") or {}).values():
        if output and storage.exists(output):
            storage.delete(output)
    return True


def to_do(storage: Storage, layout: Layout, names: dict[str, str]) -> tuple[list[str], list[str]]:
    """(shards to do, in input order; those among them redone because their input changed)."""
    ledgers = {n.removesuffix(".json") for n in storage.listdir(layout.ledger_dir)}
    recorded = [name for name in names if name in ledgers]
    with ThreadPoolExecutor(THREADS) as pool:
        changed = dict(zip(recorded, pool.map(lambda n: _changed(storage, layout, n, names[n]), recorded),
                           strict=True))
    return ([name for name in names if name not in ledgers or changed[name]],
            [name for name in recorded if changed[name]])
