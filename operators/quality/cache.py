"""Score cache keyed by the exact-dedup text key, so a page seen in an earlier crawl is not scored again.

Layout under a cache root (local or ``s3://``)::

    <root>/<name>@<digest>/<prefix>/<part>.parquet     columns key (string), score (float32), sorted by key

``<name>@<digest>`` is ``cache_id(name, model, **params)``: the digest hashes the model id/path and every
parameter that changes a score, so one model's cache never answers for another. ``<prefix>`` is the first 2
hex digits of the key (256 partitions). Each writer (one shard) writes its own part file per partition, whole
(``Storage.write_atomic``), so concurrent writers never clash and a re-run of a shard rewrites the same files.

Where it stops scaling: every shard adds a part file to each partition, and a lookup reads the ``key`` column
of every part in the partitions it touches (keys are random, so row-group statistics prune little), and lists
the whole cache once: lookup cost grows with the number of shards written, O(shards^2) over a run.
What comes next is compaction: periodically merge each partition's parts into one sorted file (or a few,
with Parquet bloom filters or a sorted-key index) and delete the merged parts.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from operators.io.layout import safe_segment
from operators.io.storage import Storage, join

CACHE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*@[0-9a-f]{16}")
SCHEMA = pa.schema([("key", pa.string()), ("score", pa.float32())])
KEY = "^[0-9a-f]{2,}$"


def cache_id(name: str, model: str, **params) -> str:
    """``<name>@<digest>``: 16 hex digits of BLAKE2b over the JSON of ``model`` and ``params`` (sorted keys).

    ``params`` should hold whatever changes a score besides the model id: the model file's identity
    (``Storage.stat``: size, ETag/mtime) when a path can be overwritten, truncation, the label read ...
    """
    if not safe_segment(name):
        raise ValueError(f"{name!r} is not a safe classifier name")
    payload = json.dumps({"model": model, "params": params}, sort_keys=True, default=str)
    return f"{name}@{hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()}"


def _checked(classifier: str) -> str:
    if not CACHE_ID.fullmatch(classifier):
        raise ValueError(f"{classifier!r} is not a cache id; make one with cache_id(name, model, **params)")
    return classifier


def _keys(keys) -> pa.Array:
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    keys = pc.cast(keys if isinstance(keys, pa.Array) else pa.array(keys, pa.string()), pa.string())
    if pc.all(pc.match_substring_regex(keys, KEY)).as_py() is False:
        raise ValueError("cache keys must be lower-case hex text keys (operators.dedup.exact.text_keys)")
    return keys


def _floats32(scores) -> pa.Array:
    if isinstance(scores, pa.ChunkedArray):
        scores = scores.combine_chunks()
    return pc.cast(scores if isinstance(scores, pa.Array) else pa.array(np.asarray(scores, np.float32)), pa.float32())


def _run_starts(values: np.ndarray) -> np.ndarray:
    """True where a sorted array's value differs from the one before (the first of each run)."""
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def store(storage: Storage, root: str, classifier: str, part_name: str, keys, scores) -> int:
    """Write one shard's (key, score) pairs as ``<part_name>.parquet`` in each partition they fall in.

    Pairs with a null key or a null/NaN score are skipped, a key repeated in the shard is written once (its
    first score). Returns the number of pairs written.
    """
    folder = join(root, _checked(classifier))
    if not safe_segment(part_name):
        raise ValueError(f"{part_name!r} is not a safe part file name")
    keys, scores = _keys(keys), _floats32(scores)
    if len(keys) != len(scores):
        raise ValueError(f"{len(keys)} keys but {len(scores)} scores")
    valid = pc.and_(pc.is_valid(keys), pc.invert(pc.fill_null(pc.is_nan(scores), True)))
    table = pa.table([keys, scores], schema=SCHEMA).filter(valid)
    table = table.take(pc.sort_indices(table, [("key", "ascending")]))
    table = table.filter(_run_starts(table["key"].to_numpy()))
    prefixes = pc.utf8_slice_codeunits(table["key"], 0, 2).to_numpy()
    starts = np.flatnonzero(_run_starts(prefixes))
    for start, stop in zip(starts, [*starts[1:], len(prefixes)], strict=True):
        part = table.slice(start, stop - start)
        storage.write_atomic(join(folder, prefixes[start], f"{part_name}.parquet"),
                             lambda out, part=part: pq.write_table(part, out))
    return table.num_rows


def lookup(storage: Storage, root: str, classifier: str, keys) -> pa.Array:
    """float32 score per key, null where not cached (or the key is null).

    Reads only the part files of the partitions the keys fall in, only their ``key``/``score`` columns,
    filtered by ``key in keys``. If parts disagree on a key's score, the smallest score is returned.
    """
    folder = join(root, _checked(classifier))
    keys = _keys(keys)
    wanted = pc.unique(keys.drop_null())
    prefixes = set(pc.unique(pc.utf8_slice_codeunits(wanted, 0, 2)).to_pylist())
    parts = [uri for uri in storage.walk(folder, ".parquet") if uri.rsplit("/", 2)[-2] in prefixes]
    if not parts:
        return pa.nulls(len(keys), pa.float32())
    filesystem, _ = storage.filesystem(folder)
    dataset = ds.dataset([uri.removeprefix("s3://") for uri in parts], schema=SCHEMA, format="parquet",
                         filesystem=filesystem)
    found = dataset.to_table(columns=["key", "score"], filter=ds.field("key").isin(wanted))
    scores = found.group_by("key").aggregate([("score", "min")])
    return scores["score_min"].combine_chunks().take(pc.index_in(keys, value_set=scores["key"].combine_chunks()))
