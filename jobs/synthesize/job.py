"""LLM generation job (rephrase, ...): documents -> prompts -> vLLM on Ray Data -> validated synthetic text.

    python -m jobs.synthesize --config jobs/recipes/rephrase-wrap.yaml --set input=<run>/dedup \\
        --set llm.model=Qwen/Qwen2.5-7B-Instruct --set llm.replicas=8

Requests (one per document x prompt x chunk) are made on Ray workers and streamed through the
engine; the driver gathers each shard's results and, once a shard is complete, writes it whole:
``<output>/<crawl>/<shard>.parquet`` (synthetic rows, plus the real documents with ``mix``),
``<output>/_rejected/...`` (outputs failing validation, with ``synth.<rule>``), then the ledger
entry ``<output>/_ledger/<crawl>/<shard>.json``. A re-run skips shards with a ledger entry. Shards planned
again after the cluster lost a node (``jobs/common/generation.py``) are listed under ``retried``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pyarrow.parquet as pq

from jobs.common.checks import check_parquet_input
from jobs.common.cli import job_main, start_ray
from jobs.common.generation import stream
from jobs.common.llm_cluster import failure
from jobs.common.node import current_node
from jobs.synthesize.checks import check
from jobs.synthesize.recipe import SynthRecipe
from jobs.synthesize.refine import refine_shards
from operators.io.layout import shard_key
from operators.io.ledger import commit_entry, finished, recorded
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join
from operators.llm.engine import engine_errors

log = logging.getLogger("cc_refinery.synthesize")


def _requests(recipe: dict, tokenizer: str):
    """A ``flat_map`` function: one input shard path -> its generation requests."""

    def make(item: dict) -> list[dict]:
        from operators.llm.requests import shard_requests, token_counter

        r = SynthRecipe.model_validate(recipe)
        storage = Storage(**r.storage.model_dump())
        fs, inner = storage.filesystem(item["path"])
        table = pq.read_table(inner, filesystem=fs)
        routing = r.routing.model_dump() if r.routing else None
        return shard_requests(table, item["shard_key"], r.prompts, routing, token_counter(tokenizer),
                              r.llm.sampling.seed, r.select.model_dump() if r.select else None, r.tpt.segmented)

    return make


def _scorer(model: str, label: str, storage: Storage):
    """texts -> float32 scores, p(``label``) of a fastText classifier (the ``dclm_fasttext`` operator)."""
    import numpy as np
    import pyarrow as pa

    from operators.filters.fasttext_quality import FastTextQualityFilter

    op = FastTextQualityFilter(storage=storage, model=model, label=label)
    return lambda texts: np.asarray(op.signals(pa.table({"text": texts}))[op.p.column], dtype=np.float32)


def _without_requests(recipe: SynthRecipe, storage: Storage, path: str) -> dict | None:
    """On a worker: when no document of the shard at ``path`` is routed to a prompt (``routing``) and inside
    ``select``, finish the shard here without the engine and return its ledger entry; else None. Reads only
    the id and the routing and select columns."""
    from operators.llm.requests import route, selected

    fs, inner = storage.filesystem(path)
    names = set(pq.read_schema(inner, filesystem=fs).names)
    columns = {"id"} | {c.column for c in (recipe.routing, recipe.select) if c}
    if not columns <= names:  # the engine path reports the missing column
        return None
    table = pq.read_table(inner, columns=sorted(columns), filesystem=fs)
    chosen = route(table, recipe.prompts, recipe.routing.model_dump() if recipe.routing else None)
    inside = selected(table, recipe.select.model_dump() if recipe.select else None)
    if any(prompts and ok for prompts, ok in zip(chosen, inside, strict=True)):
        return None
    return finish_shard(recipe, storage, path, [])


def _engine_shards(recipe: SynthRecipe, storage: Storage, paths: dict[str, str], todo: list[str]) -> list[str]:
    """The shards of ``todo`` that have requests for the engine. With ``routing`` or ``select``, the others (no
    document routed to a prompt, e.g. a mixture stage whose quality band is empty) are finished on workers
    first, and when none is left the engine is never started: a model load (minutes for a large one) for
    nothing to generate."""
    import ray

    if recipe.routing is None and recipe.select is None:
        return todo  # every document gets every prompt
    start_ray(recipe.ray)
    check = ray.remote(num_cpus=0.25)(_without_requests)
    entries = ray.get([check.remote(recipe, storage, paths[key]) for key in todo])
    for entry in filter(None, entries):
        log.info("shard %s: no document routed to a prompt, finished without the engine", entry["shard"])
    return [key for key, entry in zip(todo, entries, strict=True) if entry is None]


def finish_shard(recipe: SynthRecipe, storage: Storage, path: str, results: list[dict]) -> dict:
    """Assemble, validate and write one shard, then its ledger entry; return the entry."""
    from operators.llm.assemble import SYNTH_SCHEMA, assemble_shard

    errors = engine_errors(shard_key(path), results)
    fs, inner = storage.filesystem(path)
    post = recipe.post_filter
    score = _scorer(post.model, post.label, storage) if post else None
    kept, rejected, counts = assemble_shard(
        pq.read_table(inner, filesystem=fs), results, recipe.task, recipe.llm.model, recipe.mix,
        recipe.validation.model_dump(), recipe.tpt.model_dump(), score, post.top_fraction if post else 1.0)
    key = shard_key(path)
    for table, folder in ((kept, recipe.output), (rejected, join(recipe.output, "_rejected"))):
        if folder == recipe.output or table.num_rows:
            storage.write_atomic(join(folder, f"{key}.parquet"),
                                 lambda out, t=table: pq.write_table(t.cast(SYNTH_SCHEMA), out,
                                                                     compression=recipe.compression))
    entry = {"shard": key, "source": path, "rows": {"data": kept.num_rows, "rejected": rejected.num_rows},
             "outputs": dict(sorted(counts.items())), "requests": len(results),
             "tokens_in": sum(r["tokens_in"] for r in results), "tokens_out": sum(r["tokens_out"] for r in results),
             "node": current_node()}
    if errors:
        entry["engine_errors"] = errors
    return commit_entry(storage, join(recipe.output, "_ledger", f"{key}.json"), entry)


def run(recipe: SynthRecipe) -> dict:
    """Run the job; return its stats (also written to ``<output>/_stats.json``).

    Raises RuntimeError, after writing the stats, when the run stopped before every shard was
    finished (the cluster cannot hold it, the engine keeps dying, nothing moves); finished
    shards stay finished.
    """
    check(recipe)
    check_parquet_input(recipe)  # before anything is written: the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        return _run(recipe, storage)


def _run(recipe: SynthRecipe, storage: Storage) -> dict:
    """The run, once this process holds the output."""
    started = time.time()
    storage.sweep_staging(recipe.output)
    paths = {shard_key(p): p for p in storage.walk(recipe.input, ".parquet")}
    if not paths:
        raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
    done = recorded(storage, join(recipe.output, "_ledger")) & set(paths)  # one listing, not a HEAD per shard
    todo = sorted(set(paths) - done)
    log.info("%d shards: %d done before, %d to do", len(paths), len(done), len(todo))
    failed, retried = [], []
    if todo:
        session: list[str] = []
        try:
            if recipe.prox:
                refine_shards(recipe, storage, paths, todo, session, retried)
            elif todo := _engine_shards(recipe, storage, paths, todo):
                stream(recipe.llm, recipe.ray, storage, join(recipe.output, "_parts"), {k: paths[k] for k in todo},
                       _requests(recipe.model_dump(), recipe.tokenizer or recipe.llm.model),
                       lambda key, results: finish_shard(recipe, storage, paths[key], results), session, retried)
        except Exception as err:  # noqa: BLE001 - reported with the shards it left unfinished, then raised
            reason = failure(err, recipe.ray, recipe.llm, session[0] if session else None, started)
            ended = recorded(storage, join(recipe.output, "_ledger"))
            failed = [{"shard": k, "error": reason} for k in todo if k not in ended]
            log.error("stopped with %d shard(s) unfinished: %s", len(failed), reason)
    entries = list(finished(storage, join(recipe.output, "_ledger"), sorted(paths)).values())
    outputs, rows = Counter(), Counter()
    for entry in entries:
        outputs.update(entry["outputs"])
        rows.update(entry["rows"])
    stats = {"shards": len(entries), "rows": dict(rows), "outputs": dict(sorted(outputs.items())),
             "requests": sum(e["requests"] for e in entries), "tokens_in": sum(e["tokens_in"] for e in entries),
             "tokens_out": sum(e["tokens_out"] for e in entries), "model": recipe.llm.model,
             "wall_seconds": round(time.time() - started, 2), "retried": retried, "failed": failed}
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) not finished: {failed[0]['error']}")
    return stats


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.synthesize", SynthRecipe, run,
                    ("shards", "rows", "outputs", "wall_seconds"), argv)
