"""Benchmark decontamination: documents holding word n-grams of the user's evaluation sets are removed (or, with
``mode: spans``, the matches and the text around them cut out).

    python -m jobs.decontaminate --config jobs/recipes/decontaminate.yaml --set input=<run>/quality \\
        --set output=<run>/decontam

1. The index of the evaluation sets' n-grams (``operators/decontam/index.py``) is built by a Ray task and saved
   as ``<output>/_index/index.npz`` and then ``meta.json`` with its fingerprint (the settings and the evaluation
   files' sizes and dates); a re-run with the same fingerprint loads it instead. Workers get it from Ray's
   object store (one copy per node), never through the driver.
2. First pass, every shard: where the index's n-grams are, saved as ``<output>/_hits/<crawl>/<shard>.json``
   (kept while the shard and the index are the same); back to the driver come only the entries found and in
   how many documents. The driver adds them up: an n-gram in more than ``max_doc_hits`` documents is reported
   and ignored.
3. Second pass, each shard not done: the kept documents ``<output>/<crawl>/<shard>.parquet``, the removals
   ``<output>/_rejected/<crawl>/<shard>.parquet``, then the ledger entry ``<output>/_ledger/<crawl>/<shard>.json``.
   A finished shard is redone when its input, the index, the ignored n-grams or the removal settings changed.

``<output>/_stats.json``: documents and tokens removed per benchmark, the ignored n-grams, the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.common.checks import check_parquet_input
from jobs.common.cli import job_main, start_ray
from jobs.common.progress import Progress
from jobs.decontaminate.checks import check
from jobs.decontaminate.recipe import DecontamRecipe
from operators.io.layout import shard_key, shard_of
from operators.io.ledger import commit_entry, finished, pending, recorded
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join

log = logging.getLogger("cc_refinery.decontaminate")
INDEX_VERSION = 1  # of the index's hashing; part of its fingerprint
HIT_FIELDS = ("doc", "entry", "start", "end")


def _recipe(raw: dict) -> tuple[DecontamRecipe, Storage]:
    recipe = DecontamRecipe.model_validate(raw)
    return recipe, Storage(**recipe.storage.model_dump())


def _read(storage: Storage, path: str, columns: list[str] | None = None) -> pa.Table:
    fs, inner = storage.filesystem(path)
    try:
        return pq.read_table(inner, filesystem=fs, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise RuntimeError(f"cannot read input file {path}: {err}") from err


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(recipe: DecontamRecipe, storage: Storage) -> str:
    """What the index depends on: the settings and each evaluation file as it is now."""
    return _digest({"version": INDEX_VERSION, "normalisation": recipe.normalisation, "ngram": recipe.ngram,
                    "min_words": recipe.min_words,
                    "evals": [{**e.model_dump(), "file": storage.stat(e.path)} for e in recipe.evals]})


def build_index(raw: dict, index_id: str):
    """Ray task: read the evaluation files, build the index, save it; return (index, its meta)."""
    from operators.decontam.evals import read_texts
    from operators.decontam.index import EvalIndex

    recipe, storage = _recipe(raw)
    folder = join(recipe.output, "_index")
    if storage.exists(join(folder, "meta.json")):  # the old meta goes first: it must never vouch for a new index
        storage.delete(join(folder, "meta.json"))
    evals, bad = [], {}
    for evaluation in recipe.evals:
        texts, bad[evaluation.name] = read_texts(storage, evaluation.path, evaluation.fields)
        evals.append((evaluation.name, texts))
    index, counts = EvalIndex.build(evals, recipe.ngram, recipe.normalisation, recipe.min_words)
    meta = {"fingerprint": index_id, "entries": len(index), "lengths": index.lengths,
            "benchmarks": {name: {**counts[name], "bad_rows": dict(bad[name])} for name in counts}}
    storage.write_atomic(join(folder, "index.npz"), lambda out: out.write(index.to_bytes()))
    storage.write_text(join(folder, "meta.json"), json.dumps(meta, indent=1))
    return index, {**meta, "reused": False}


def load_index(raw: dict):
    """Ray task: the saved index and its meta."""
    from operators.decontam.index import EvalIndex

    recipe, storage = _recipe(raw)
    folder = join(recipe.output, "_index")
    meta = json.loads(storage.read_bytes(join(folder, "meta.json")))
    return EvalIndex.from_bytes(storage.read_bytes(join(folder, "index.npz"))), {**meta, "reused": True}


def count_shard(raw: dict, key: str, path: str, index, index_id: str) -> dict:
    """Ray task, first pass: the shard's hits saved under ``_hits/`` (or found there); returns per entry found
    ``[documents, n-gram, benchmark]``."""
    from operators.decontam.shard import doc_counts, find_hits

    recipe, storage = _recipe(raw)
    cache = join(recipe.output, "_hits", f"{key}.json")
    identity = storage.stat(path)
    if storage.exists(cache):
        saved = json.loads(storage.read_bytes(cache))
        if saved["input"] == identity and saved["index"] == index_id:
            return {"shard": key, "counts": saved["counts"]}
    hits = find_hits(_read(storage, path, ["text"]).column("text").to_pylist(), index)
    counts = {str(e): [d, ngram, index.names[index.benchmark[e]]] for e, (d, ngram) in doc_counts(hits).items()}
    saved = {"shard": key, "input": identity, "index": index_id, "counts": counts, "ngram": hits.ngram,
             **{k: getattr(hits, k).tolist() for k in HIT_FIELDS}}
    storage.write_text(cache, json.dumps(saved))
    return {"shard": key, "counts": counts}


def write_shard(raw: dict, key: str, path: str, index, ignored: list[int], index_id: str, removal_id: str) -> dict:
    """Ray task, second pass: the shard's kept documents and removals, then its ledger entry."""
    from operators.decontam.shard import Hits, decontaminate

    recipe, storage = _recipe(raw)
    identity = storage.stat(path)
    saved = json.loads(storage.read_bytes(join(recipe.output, "_hits", f"{key}.json")))
    if saved["input"] != identity or saved["index"] != index_id:
        raise RuntimeError(f"{path} changed between the two passes; run again")
    hits = Hits(*(np.asarray(saved[k], np.int64) for k in HIT_FIELDS), saved["ngram"])
    kept, rejected, summary = decontaminate(_read(storage, path), hits, index, np.asarray(ignored, np.int64),
                                            recipe.mode, recipe.span_chars, recipe.max_splits)
    target = join(recipe.output, f"{key}.parquet")
    removals = join(recipe.output, "_rejected", f"{key}.parquet")
    storage.write_atomic(target, lambda out: pq.write_table(kept, out, compression=recipe.compression))
    if rejected is not None:
        storage.write_atomic(removals, lambda out: pq.write_table(rejected, out, compression=recipe.compression))
    elif storage.exists(removals):  # left by an earlier run of this shard with other hits
        storage.delete(removals)
    entry = {"shard": key, "crawl": shard_of(path)[0], "input": identity, "index": index_id, "removal": removal_id,
             "outputs": {"data": target, "rejected": removals if rejected is not None else None}, "summary": summary}
    commit_entry(storage, join(recipe.output, "_ledger", f"{key}.json"), entry)
    return {"shard": key, "docs": summary["docs"]}


def _error(err: Exception) -> str:
    return " ".join(str(getattr(err, "cause", None) or err).split())[:500]


def _plan(recipe: DecontamRecipe, storage: Storage) -> tuple[dict[str, str], list[str]]:
    """(input shards by key, keys without a finished ledger entry), after checking the input's columns."""
    paths = {shard_key(p): p for p in storage.walk(recipe.input, ".parquet")}
    first = next(iter(paths.values()))
    fs, inner = storage.filesystem(first)
    try:
        names = pq.read_schema(inner, filesystem=fs).names
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"input: cannot read {first}: {' '.join(str(err).split())}") from None
    missing = [c for c in ("id", "text") if c not in names]
    if missing:
        raise ValueError(f"input: {first} has no column(s) {', '.join(missing)}")
    todo, _ = pending(storage, paths, recipe.output, log)
    return paths, todo


def _stale(storage: Storage, output: str, done: list[str], index_id: str, removal_id: str) -> list[str]:
    """Finished shards made with another index, other ignored n-grams or other removal settings (so redone)."""
    stale = [k for k, entry in finished(storage, join(output, "_ledger"), done).items()
             if (entry.get("index"), entry.get("removal")) != (index_id, removal_id)]
    if stale:
        log.info("%d finished shard(s) were made with another index, ignored n-grams or mode: redone", len(stale))
    return stale


def _index(recipe: DecontamRecipe, storage: Storage, index_id: str):
    """(index object ref, meta): the saved index when its fingerprint is this one, else a new one."""
    import ray

    meta_uri = join(recipe.output, "_index", "meta.json")
    same = storage.exists(meta_uri) and json.loads(storage.read_bytes(meta_uri)).get("fingerprint") == index_id
    task = ray.remote(load_index if same else build_index).options(num_returns=2)
    index, meta = task.remote(recipe.model_dump()) if same else task.remote(recipe.model_dump(), index_id)
    meta = ray.get(meta)
    log.info("index: %s, %d n-grams of lengths %s", "reused" if meta["reused"] else "built", meta["entries"],
             meta["lengths"])
    return index, meta


def _passes(recipe: DecontamRecipe, storage: Storage, paths: dict[str, str], todo: list[str], index_id: str,
            failed: list[dict]) -> dict:
    """Both passes on Ray; fills ``failed``; returns what ``_stats.json`` says of the index and ignored n-grams."""
    import ray

    raw = recipe.model_dump()
    index, meta = _index(recipe, storage, index_id)
    totals: dict[int, list] = {}
    counting = {ray.remote(count_shard).remote(raw, k, p, index, index_id): k for k, p in paths.items()}
    for ref, key in counting.items():
        try:
            for entry, (docs, ngram, bench) in ray.get(ref)["counts"].items():
                totals.setdefault(int(entry), [0, ngram, bench])[0] += docs
        except Exception as err:  # noqa: BLE001 - every shard's failure is named
            failed.append({"shard": key, "error": _error(err)})
    if failed:  # the documents per n-gram need every shard: nothing is removed without them
        return {"index": meta}
    ignored = sorted(e for e, (docs, _, _) in totals.items() if docs > recipe.max_doc_hits)
    removal_id = _digest({"ignored": ignored, "mode": recipe.mode, "span_chars": recipe.span_chars,
                          "max_splits": recipe.max_splits})
    todo = todo + _stale(storage, recipe.output, [k for k in paths if k not in todo], index_id, removal_id)
    progress = Progress("decontaminate", len(todo))
    write = ray.remote(write_shard)
    pending = {write.remote(raw, k, paths[k], index, ignored, index_id, removal_id): k for k in todo}
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready)
        try:
            progress.shard_done(ray.get(ready)["docs"])
        except Exception as err:  # noqa: BLE001 - one shard's failure is reported with it; the others go on
            failed.append({"shard": key, "error": _error(err)})
    return {"index": meta, "ignored_ngrams": sorted(
        ({"ngram": totals[e][1], "benchmark": totals[e][2], "documents": totals[e][0]} for e in ignored),
        key=lambda row: (-row["documents"], row["ngram"]))}


def run(recipe: DecontamRecipe) -> dict:
    """Run the job; return its stats. Raises RuntimeError, after writing the stats, if shards were left unfinished."""
    check(recipe)
    check_parquet_input(recipe)  # before anything is written: the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        return _decontaminate(recipe, storage)


def _decontaminate(recipe: DecontamRecipe, storage: Storage) -> dict:
    started = time.time()
    paths, todo = _plan(recipe, storage)
    failed: list[dict] = []
    found: dict = {}
    try:
        start_ray(recipe.ray)
        found = _passes(recipe, storage, paths, todo, fingerprint(recipe, storage), failed)
    except Exception as err:  # noqa: BLE001 - reported with the shards it left unfinished, then raised
        reason = _error(err)
        ended = recorded(storage, join(recipe.output, "_ledger"))
        failed = [{"shard": k, "error": reason} for k in todo if k not in ended]
        log.error("stopped with %d shard(s) unfinished: %s", len(failed), reason)
    done = finished(storage, join(recipe.output, "_ledger"), sorted(paths))
    stats = {**summarize(recipe, storage, done), **found, "wall_seconds": round(time.time() - started, 2),
             "failed": failed}
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) failed ({len(done)} of {len(paths)} finished): "
                           f"{failed[0]['shard']}: {failed[0]['error']}")
    return stats


def summarize(recipe: DecontamRecipe, storage: Storage, done: dict[str, dict]) -> dict:
    """The finished shards' ledger entries' summaries added up; every benchmark named, with zeros where nothing
    was removed."""
    from operators.quality.summary import add

    total: dict = {"benchmarks": {e.name: {"documents": 0, "cut": 0, "tokens": 0} for e in recipe.evals}}
    for entry in done.values():
        add(total, entry["summary"])
    docs = total.get("docs", 0)
    return {"shards": len(done), "documents": docs, "tokens": total.get("tokens", 0),
            "kept": docs - total.get("removed", 0), "removed": total.get("removed", 0), "cut": total.get("cut", 0),
            "tokens_removed": total.get("tokens_removed", 0), "null_text": total.get("null_text", 0),
            "benchmarks": total["benchmarks"]}


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.decontaminate", DecontamRecipe, run,
                    ("shards", "documents", "removed", "cut", "wall_seconds"), argv)
