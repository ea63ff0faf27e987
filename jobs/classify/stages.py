"""The quality job's Ray Data stages. A row is one shard, so every shard is written whole by one worker:

    prepare (CPU)  ->  score, one actor stage per transformer classifier (GPU, or CPU)  ->  write (CPU)

``prepare`` reads the texts, takes cached scores, and tokenises the rest (truncated, as flat
int32 ids + offsets, carried as bytes); ``Score`` runs the model over them in length-sorted
batches; ``write`` adds every score column (fastText too), the buckets, and writes the shard and
then its ledger entry. For calibration the same stages run over a deterministic sample and
``sample_scores`` returns the scores instead of writing.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.classify.recipe import FastTextClassifier, QualityRecipe, TransformerClassifier
from jobs.common.node import current_node
from operators.io.layout import shard_of
from operators.io.ledger import commit_entry
from operators.io.storage import Storage, join


def _recipe(raw: dict) -> tuple[QualityRecipe, Storage]:
    recipe = QualityRecipe.model_validate(raw)
    return recipe, Storage(**recipe.storage.model_dump())


def read_shard(storage: Storage, path: str, columns: list[str] | None = None) -> pa.Table:
    fs, inner = storage.filesystem(path)
    try:
        return pq.read_table(inner, filesystem=fs, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise RuntimeError(f"cannot read input file {path}: {err}") from err


def cache_root(recipe: QualityRecipe) -> str:
    return recipe.cache.root or join(recipe.output, "_cache")


def cache_of(c: TransformerClassifier) -> str:
    """The cache partition of a classifier: its name and a digest of everything that changes its scores."""
    from operators.quality.cache import cache_id

    return cache_id(c.name, c.model, max_length=c.max_length, label=c.label)


def _as_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def _from_bytes(data: bytes, dtype) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype)


def prepare(raw: dict, sample_fraction: float | None = None):
    """A ``map`` function: shard row -> row with each transformer's token ids and cached scores."""

    def run(row: dict) -> dict:
        from operators.dedup.exact import text_keys
        from operators.quality.buckets import sample_mask
        from operators.quality.cache import lookup
        from operators.quality.transformer import load_tokenizer, tokenize

        recipe, storage = _recipe(raw)
        identity = json.dumps(storage.stat(row["path"]))
        texts = read_shard(storage, row["path"], ["text"]).column("text").combine_chunks()
        if sample_fraction is not None:
            texts = texts.filter(pa.array(sample_mask(text_keys(texts), sample_fraction)))
        keys = text_keys(texts) if recipe.cache.enabled else None
        out = {**row, "rows": len(texts), "input": identity}
        for c in recipe.transformers:
            cached = (lookup(storage, cache_root(recipe), cache_of(c), keys).to_numpy(zero_copy_only=False)
                      .astype(np.float32) if keys is not None else np.full(len(texts), np.nan, np.float32))
            todo = np.flatnonzero(np.isnan(cached))
            flat, offsets = tokenize(load_tokenizer(c.model), texts.take(pa.array(todo)), c.max_length)
            out.update({f"{c.name}__ids": _as_bytes(flat), f"{c.name}__offsets": _as_bytes(offsets),
                        f"{c.name}__todo": _as_bytes(todo.astype(np.int64)), f"{c.name}__cached": _as_bytes(cached)})
        return out

    return run


class Score:
    """Ray Data actor: one transformer classifier's model, loaded once; one shard per call."""

    def __init__(self, name: str, model: str, device: str, dtype: str, batch_size: int, label: str | None,
                 threads: int):
        import torch

        from operators.quality.transformer import Scorer

        torch.set_num_threads(threads)  # the actor's share of the node's cores, not all of them
        self.name = name
        self.scorer = Scorer(model, device, dtype, batch_size, label)

    def __call__(self, batch: dict) -> dict:
        ids, offsets = f"{self.name}__ids", f"{self.name}__offsets"
        scores = [_as_bytes(self.scorer(_from_bytes(i, np.int32), _from_bytes(o, np.int64)))
                  for i, o in zip(batch[ids], batch[offsets], strict=True)]
        out = {k: v for k, v in batch.items() if k not in (ids, offsets)}
        out[f"{self.name}__new"] = np.array(scores, dtype=object)
        out[f"{self.name}__node"] = np.array([current_node()] * len(scores), dtype=object)
        return out


def _transformer_scores(row: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(all scores of the shard, the positions that were newly scored)."""
    scores = _from_bytes(row[f"{name}__cached"], np.float32).copy()
    todo = _from_bytes(row[f"{name}__todo"], np.int64)
    scores[todo] = _from_bytes(row[f"{name}__new"], np.float32)
    return scores, todo


def _fasttext_scores(recipe: QualityRecipe, storage: Storage, c: FastTextClassifier, texts: pa.Array) -> np.ndarray:
    from operators.registry import build

    params = {"model": c.model, "label": c.label, "column": f"{c.name}_score", "threshold": None}
    if c.filename:
        params["filename"] = c.filename
    signals = build("dclm_fasttext", params, storage).signals(pa.table({"text": texts}))
    return np.asarray(signals[f"{c.name}_score"], dtype=np.float32)


def sample_scores(raw: dict):
    """A ``map`` function for calibration: sampled shard row -> its scores per classifier and token counts."""

    def run(row: dict) -> dict:
        from operators.dedup.exact import text_keys
        from operators.quality.buckets import sample_mask
        from operators.quality.summary import token_counts

        recipe, storage = _recipe(raw)
        table = read_shard(storage, row["path"])
        table = table.filter(pa.array(sample_mask(text_keys(table.column("text").combine_chunks()),
                                                  recipe.buckets.sample_fraction)))
        texts = table.column("text").combine_chunks()
        out = {"key": row["key"], "tokens": _as_bytes(token_counts(texts))}
        for name in recipe.buckets.classifiers:
            out[name] = _as_bytes(_score_of(recipe, storage, name, row, table, texts)[0])
        return out

    return run


def _score_of(recipe: QualityRecipe, storage: Storage, name: str, row: dict, table: pa.Table,
              texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(scores of classifier ``name`` for the shard, positions newly scored by a model) from this run or the input."""
    by_name = {c.name: c for c in recipe.classifiers}
    if name not in by_name:
        return table.column(f"{name}_score").to_numpy(zero_copy_only=False).astype(np.float32), np.array([], int)
    if by_name[name].kind == "fasttext":
        scores = _fasttext_scores(recipe, storage, by_name[name], texts)
        return scores, np.arange(len(scores))
    return _transformer_scores(row, name)


def write(raw: dict, calibration: dict | None):
    """A ``map`` function: scored shard row -> the shard written with its columns, then its ledger entry."""

    def run(row: dict) -> dict:
        from operators.dedup.exact import text_keys
        from operators.quality import buckets as qb
        from operators.quality.cache import store
        from operators.quality.summary import histogram, token_counts, weighted_counts
        from operators.quality.transformer import int_score

        recipe, storage = _recipe(raw)
        table = read_shard(storage, row["path"])
        texts = table.column("text").combine_chunks()
        tokens = token_counts(texts)
        summary: dict = {"docs": table.num_rows, "tokens": int(tokens.sum()), "cache_hits": {}, "histograms": {}}
        keys = text_keys(texts) if recipe.cache.enabled else None
        scores: dict[str, np.ndarray] = {}
        for c in recipe.classifiers:
            scores[c.name], fresh = _score_of(recipe, storage, c.name, row, table, texts)
            table = table.append_column(pa.field(f"{c.name}_score", pa.float32()), pa.array(scores[c.name]))
            if c.kind == "transformer":
                table = table.append_column(pa.field(f"{c.name}_int_score", pa.int8()),
                                            pa.array(int_score(scores[c.name]), mask=np.isnan(scores[c.name])))
                summary["cache_hits"][c.name] = table.num_rows - len(fresh)
                if keys is not None and len(fresh):
                    store(storage, cache_root(recipe), cache_of(c), row["key"].replace("/", "__"),
                          keys.take(pa.array(fresh)), pa.array(scores[c.name][fresh]))
            summary["histograms"][c.name] = histogram(scores[c.name], *c.range)
        if calibration is not None:
            cuts = calibration["classifiers"]
            per = {name: qb.bucket(scores[name] if name in scores else
                                   _score_of(recipe, storage, name, row, table, texts)[0], cuts[name]["cut_points"])
                   for name in recipe.buckets.classifiers}
            ensemble = qb.ensemble(per)
            table = table.append_column(pa.field("quality_bucket", pa.int8()), pa.array(ensemble, mask=ensemble < 0))
            table = table.append_column(pa.field("quality_label", pa.string()), qb.label(ensemble))
            summary["bucket_tokens"] = weighted_counts(ensemble, tokens, 20)
            summary["classifier_bucket_tokens"] = {n: weighted_counts(b, tokens, 20) for n, b in per.items()}
        target = join(recipe.output, f"{row['key']}.parquet")
        storage.write_atomic(target, lambda out: pq.write_table(table, out, compression=recipe.compression))
        crawl = shard_of(row["path"])[0]
        entry = {"shard": row["key"], "crawl": crawl, "input": json.loads(row["input"]), "outputs": {"data": target},
                 "calibration": f"{calibration['crawl']}.v{calibration['version']}" if calibration else None,
                 "summary": summary, "nodes": {"write": current_node(), **{f"score_{c.name}": row[f"{c.name}__node"]
                                                                   for c in recipe.transformers}}}
        entry = commit_entry(storage, join(recipe.output, "_ledger", f"{row['key']}.json"), entry)
        return {"entry": json.dumps(entry)}

    return run
