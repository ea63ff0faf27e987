"""Phase A, one Ray task per input file: tokenize its documents, key every copy (weights x repeats, curriculum
phases), write the file's token cache sorted by key under ``<output>/_work/tokens/`` and its histogram of tokens
over the key bins; then its ledger entry. Memory: one input file's tokens (times their copies)."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.export.recipe import ExportRecipe
from operators.export import keys as k
from operators.export.kinds import kind_of
from operators.export.phases import FINAL, phase_numbers
from operators.export.tokenize import ExportTokenizer
from operators.io.ledger import commit_entry
from operators.io.parquet_batches import file_batches
from operators.io.storage import Storage, join

META = ("synth_task", "synth_prompt", "language", "quality_label", "quality_bucket", "rehydration_repeats")
INDEX = pa.schema([("key", pa.uint64()), ("offset", pa.int64()), ("length", pa.int64()),
                   ("kind", pa.string()), ("prompt", pa.string()), ("language", pa.string()),
                   ("quality_label", pa.string())])


def cache_paths(output: str, key: str) -> dict[str, str]:
    base = join(output, "_work", "tokens", key)
    return {"tokens": f"{base}.tok", "index": f"{base}.index.parquet", "histogram": f"{base}.hist.npy"}


STRING = pa.string()


def _column(batch: pa.RecordBatch, name: str, type_: pa.DataType = STRING) -> pa.Array:
    """The named column as ``type_`` (all nulls where the file lacks it)."""
    names = batch.schema.names
    return batch.column(names.index(name)).cast(type_) if name in names else pa.nulls(batch.num_rows, type_)


class _Copies:
    """The copies of one file's documents, gathered batch by batch."""

    def __init__(self):
        self.tokens, self.lengths, self.rows, self.keys, self.meta = [], [], [], [], []
        self.docs = 0

    def add(self, tokens, lengths, rows, keys, meta: pa.Table) -> None:
        self.rows.append(rows + self.docs)
        self.docs += len(lengths)
        self.tokens.append(tokens)
        self.lengths.append(lengths)
        self.keys.append(keys)
        self.meta.append(meta)


def _batch(recipe: ExportRecipe, tokenizer: ExportTokenizer, batch: pa.RecordBatch, bad: Counter, out: _Copies):
    texts, ids = _column(batch, "text"), _column(batch, "id")
    valid = pc.and_(pc.is_valid(ids), pc.greater(pc.utf8_length(pc.fill_null(texts, "")), 0)).to_numpy(
        zero_copy_only=False)
    bad["no_id"] += int(ids.null_count)
    bad["empty_text"] += int((~valid).sum()) - int(ids.null_count)
    kinds = np.array([kind_of(t) for t in _column(batch, "synth_task").to_pylist()], dtype=object)
    repeats = pc.fill_null(_column(batch, "rehydration_repeats", pa.int64()), 1).to_numpy(zero_copy_only=False)
    weights = np.array([recipe.weights.get(kind, 1.0) for kind in kinds], np.float64)
    hashes = k.doc_hashes(recipe.seed, [i or "" for i in ids.to_pylist()])
    counts = np.where(valid, k.copies(hashes, weights * repeats), 0)
    phases, final = None, np.zeros(len(counts), bool)
    if recipe.curriculum is not None:
        column = recipe.curriculum.column
        quality = _column(batch, column, STRING if column == "quality_label" else pa.int64())
        phases = phase_numbers(quality, column)
        if recipe.curriculum.final is not None:
            named = recipe.curriculum.final
            final = valid & (np.isin(kinds, named.kinds) | np.isin(pc.cast(quality, pa.string()).to_numpy(
                zero_copy_only=False), named.labels))
    keep = np.flatnonzero((counts > 0) | final)
    if not len(keep):
        return
    tokens, lengths = tokenizer.encode(texts.take(keep).to_pylist())
    rows, keys = k.copy_keys(hashes[keep], counts[keep], None if phases is None else phases[keep])
    if final.any():
        extra = np.where(final[keep], recipe.curriculum.final.max_repeats, 0)
        more_rows, more_keys = k.copy_keys(k.rehash(hashes[keep], 2), extra, np.full(len(keep), FINAL))
        rows, keys = np.concatenate([rows, more_rows]), np.concatenate([keys, more_keys])
    meta = pa.table({"kind": pa.array(kinds[keep].tolist(), pa.string()),
                     "prompt": _column(batch, "synth_prompt").take(keep),
                     "language": _column(batch, "language").take(keep),
                     "quality_label": _column(batch, "quality_label").take(keep)})
    out.add(tokens, lengths, rows, keys, meta)


def _save_npy(storage: Storage, uri: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    storage.write_atomic(uri, lambda out: out.write(buffer.getvalue()))


def tokenize_file(raw: dict, key: str, uri: str, settings: str) -> dict:
    """Tokenize and key one input file; write its cache, then its ledger entry (returned)."""
    recipe = ExportRecipe.model_validate(raw)
    storage = Storage(**recipe.storage.model_dump())
    tokenizer = ExportTokenizer(recipe.tokenizer, recipe.eos, recipe.fast_bpe)
    identity = storage.stat(uri)
    bad: Counter = Counter()
    copies, read = _Copies(), 0
    for batch in file_batches(storage, uri, ["id", "text", *META], recipe.batch_size):
        read += batch.num_rows
        _batch(recipe, tokenizer, batch, bad, copies)
    paths = cache_paths(recipe.output, key)
    tokens, length_of, rows, keys = _flat(copies)
    order = np.lexsort((np.arange(len(keys)), keys))
    rows, keys = rows[order], keys[order]
    starts = np.cumsum(length_of) - length_of
    lengths = length_of[rows]
    offsets = np.cumsum(lengths) - lengths
    gather = np.repeat(starts[rows] - offsets, lengths) + np.arange(int(lengths.sum()))
    storage.write_atomic(paths["tokens"], lambda out: out.write(tokens[gather].tobytes()))
    meta = pa.concat_tables(copies.meta) if copies.meta else pa.table({n: pa.array([], pa.string())
                                                                       for n in INDEX.names[3:]})
    index = pa.table({"key": keys, "offset": offsets, "length": lengths}).append_column(
        "kind", meta.column("kind").take(rows))
    for name in INDEX.names[4:]:
        index = index.append_column(name, meta.column(name).take(rows))
    storage.write_atomic(paths["index"], lambda out: pq.write_table(index.cast(INDEX), out, row_group_size=65536))
    _save_npy(storage, paths["histogram"], np.bincount(k.bins(keys), weights=lengths, minlength=k.BINS)
              .astype(np.int64))
    summary = {"docs": read, "documents": int(len(length_of)), "copies": int(len(keys)),
               "tokens": int(lengths.sum()), "bad": {r: n for r, n in sorted(bad.items()) if n}}
    entry = {"shard": key, "input": identity, "settings": settings, "outputs": paths, "summary": summary}
    return commit_entry(storage, join(recipe.output, "_ledger", "tokens", f"{key}.json"), entry)


def _flat(copies: _Copies) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not copies.lengths:
        empty = np.zeros(0, np.int64)
        return np.zeros(0, np.uint32), empty, empty, np.zeros(0, np.uint64)
    return (np.concatenate(copies.tokens), np.concatenate(copies.lengths), np.concatenate(copies.rows),
            np.concatenate(copies.keys))
