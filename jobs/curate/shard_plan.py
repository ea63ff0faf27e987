"""Which units a curation run processes: whole shards, or parts of large gzipped shards.

With at least ``PARTS_PER_WORKER`` shards per worker, every shard is one unit and nothing is
asked of storage. With fewer (a handful of large files), gzipped shards are split into parts of
about ``input.part_mb`` (default: the input's size over ``PARTS_PER_WORKER`` per worker, at least
``MIN_PART_MB``), so the workers stay busy to the end. A shard with ledger entries keeps the split
they name, so a re-run with other settings never mixes two splits of one shard.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from operators.io.ledger import THREADS
from operators.io.shard import PART_RE, unit_name
from operators.io.storage import Storage

PARTS_PER_WORKER = 4
MIN_PART_MB = 16.0


def recorded_splits(names: dict[str, str], recorded: set[str]) -> dict[str, int]:
    """The number of parts each shard's ledger entries name (shards with entries only)."""
    splits: dict[str, set[int]] = {}
    for unit in recorded:
        match = PART_RE.fullmatch(unit)
        shard, n = (match["shard"], int(match["n"])) if match and match["shard"] in names else (unit, 1)
        if shard in names:
            splits.setdefault(shard, set()).add(n)
    mixed = sorted(s for s, ns in splits.items() if len(ns) > 1)
    if mixed:
        raise ValueError(f"shard {mixed[0]} has ledger entries of two splits ({sorted(splits[mixed[0]])} parts): "
                         "remove its entries and outputs to redo it")
    return {shard: ns.pop() for shard, ns in splits.items()}


def _size(storage: Storage, uri: str) -> int:
    """The input's size; 0 if it is gone (its worker then fails it by name, and the others go on)."""
    try:
        return storage.stat(uri)["size"]
    except (FileNotFoundError, PermissionError):
        return 0


def plan_units(storage: Storage, names: dict[str, str], recorded: set[str], workers: Callable[[], int],
               part_mb: float | None) -> dict[str, tuple[str, str, tuple[int, int]]]:
    """``{unit: (uri, shard, (k, n))}`` in input order; ``workers()`` is asked only for shards without entries."""
    splits = recorded_splits(names, recorded)
    fresh = [s for s in names if s not in splits and names[s].endswith(".gz")]
    if fresh and (part_mb is not None or len(names) < PARTS_PER_WORKER * workers()):
        with ThreadPoolExecutor(THREADS) as pool:
            sizes = dict(zip(fresh, pool.map(lambda s: _size(storage, names[s]), fresh), strict=True))
        auto = max(MIN_PART_MB * 1e6, sum(sizes.values()) / (PARTS_PER_WORKER * workers()))
        part = part_mb * 1e6 if part_mb else auto
        splits.update({s: max(1, math.ceil(size / part)) for s, size in sizes.items()})  # gone: 1 part, to fail
    units = {}
    for shard, uri in names.items():
        n = splits.get(shard, 1)
        units.update({unit_name(shard, (k, n)): (uri, shard, (k, n)) for k in range(n)})
    return units
