"""Phase C, one Ray task per output shard: the copies whose keys fall in the shard's bin range, read from every
token cache (a filtered index read and one ranged token read each), ordered by key and written as Megatron
``.bin``/``.idx`` or datatrove ``.ds`` files through staging files; then the shard's ledger entry. Memory: one
output shard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.export.recipe import ExportRecipe
from operators.export import datatrove_ds, megatron
from operators.export.keys import BINS, bin_start
from operators.io.ledger import commit_entry
from operators.io.storage import Storage, join

GROUPS = {"kinds": "kind", "prompts": "prompt", "languages": "language", "quality_labels": "quality_label"}


def shard_files(output: str, name: str, fmt: str) -> dict[str, str]:
    """The shard's files, the one a reader opens last (``.idx`` / ``.ds.index``) last."""
    base = join(output, name)
    if fmt == "megatron":
        return {"bin": f"{base}.bin", "idx": f"{base}.idx"}
    return {"ds": f"{base}.ds", "metadata": f"{base}.ds.metadata", "index": f"{base}.ds.index"}


def _read(storage: Storage, cache: dict, lo: int, hi: int) -> tuple[pa.Table, np.ndarray]:
    """One cache's index rows with keys in [lo, hi) and their tokens (contiguous: the cache is sorted by key)."""
    fs, inner = storage.filesystem(cache["index"])
    filters = [("key", ">=", pa.scalar(lo, pa.uint64()))]
    if hi < 1 << 64:
        filters.append(("key", "<", pa.scalar(hi, pa.uint64())))
    rows = pq.read_table(inner, filesystem=fs, filters=filters)
    if not rows.num_rows:
        return rows, np.zeros(0, np.uint32)
    offsets = rows.column("offset").to_numpy()
    first, end = int(offsets[0]), int(offsets[-1] + rows.column("length").to_numpy()[-1])
    fs, inner = storage.filesystem(cache["tokens"])
    with fs.open_input_file(inner) as f:
        tokens = np.frombuffer(f.read_at((end - first) * 4, first * 4), np.uint32)
    return rows, tokens


def _counts(table: pa.Table) -> dict:
    """Documents and tokens per kind, prompt, language and quality label: ``{group: {value: [docs, tokens]}}``."""
    out = {}
    for group, column in GROUPS.items():
        summed = table.group_by(column).aggregate([("length", "count"), ("length", "sum")]).to_pylist()
        out[group] = {str(r[column] if r[column] is not None else "none"): [r["length_count"], r["length_sum"]]
                      for r in sorted(summed, key=lambda r: str(r[column]))}
    return out


def write_shard(raw: dict, shard: dict, caches: list[dict], tokenizer: dict) -> dict:
    """Write one planned shard (``{"name", "bins", "phase"}``) from the caches; then its ledger entry."""
    recipe = ExportRecipe.model_validate(raw)
    storage = Storage(**recipe.storage.model_dump())
    lo, hi = bin_start(shard["bins"][0]), bin_start(shard["bins"][1]) if shard["bins"][1] < BINS else 1 << 64
    tables, buffers = [], []
    for number, cache in enumerate(caches):
        rows, tokens = _read(storage, cache, lo, hi)
        if rows.num_rows:
            first = rows.column("offset")[0].as_py()
            base = sum(len(b) for b in buffers)
            tables.append(rows.append_column("start", pa.array(rows.column("offset").to_numpy() - first + base))
                          .append_column("cache", pa.array(np.full(rows.num_rows, number))))
            buffers.append(tokens)
    table = pa.concat_tables(tables) if tables else None
    lengths, tokens = np.zeros(0, np.int64), np.zeros(0, np.uint32)
    if table is not None:
        order = np.lexsort((table.column("offset").to_numpy(), table.column("cache").to_numpy(),
                            table.column("key").to_numpy()))
        table = table.take(order)
        lengths, starts = table.column("length").to_numpy(), table.column("start").to_numpy()
        offsets = np.cumsum(lengths) - lengths
        tokens = np.concatenate(buffers)[np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))]
    files = shard_files(recipe.output, shard["name"], recipe.format)
    dtype = np.dtype(tokenizer["dtype"])
    if recipe.format == "megatron":
        writes = {"bin": lambda out: megatron.write_bin(out, tokens, dtype),
                  "idx": lambda out: megatron.write_idx(out, lengths, dtype)}
    else:
        text = datatrove_ds.metadata(recipe.tokenizer, dtype, len(tokens)).encode()
        writes = {"ds": lambda out: datatrove_ds.write_ds(out, tokens, dtype),
                  "metadata": lambda out: out.write(text),
                  "index": lambda out: datatrove_ds.write_index(out, lengths)}
    for name, uri in files.items():
        storage.write_atomic(uri, writes[name])
    entry = {"shard": shard["name"], "phase": shard["phase"], "outputs": files, "documents": len(lengths),
             "tokens": int(lengths.sum()), "counts": _counts(table) if table is not None else {}}
    return commit_entry(storage, join(recipe.output, "_ledger", "shards", f"{shard['name']}.json"), entry)
