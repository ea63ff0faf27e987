"""LLM quality rating: every document of a run's shards rated by a prompt through the generation engine.

Run through ``python -m jobs.classify`` with a recipe that has a ``rating`` block
(``jobs/recipes/quality-llm.yaml``). Each document's start (up to the prompt's input budget) is
sent once; the answer is parsed conservatively (``operators/llm/rating.py``) into the kind's
columns, null with a ``rating_reason`` when it cannot be read. Shards are written whole as
``<output>/<crawl>/<shard>.parquet`` with the columns added, then their ledger entry.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from jobs.classify.recipe import QualityRecipe
from jobs.classify.shards import plan
from jobs.classify.stages import read_shard
from jobs.common.generation import stream
from jobs.common.llm_cluster import failure
from operators.io.layout import shard_of
from operators.io.ledger import commit_entry, finished, recorded
from operators.io.storage import Storage, join
from operators.llm.engine import engine_errors
from operators.quality.summary import add

log = logging.getLogger("cc_refinery.rate")
SCORE_COLUMN = {"fineweb_edu_rating": "llm_edu_score", "dataman_rating": "dataman_overall"}


def _requests(raw: dict, tokenizer: str):
    """A ``flat_map`` function: one shard -> one rating request per document."""

    def make(item: dict) -> list[dict]:
        from operators.llm.requests import rating_requests, token_counter

        recipe = QualityRecipe.model_validate(raw)
        storage = Storage(**recipe.storage.model_dump())
        table = read_shard(storage, item["path"], ["text"])
        return rating_requests(table, item["shard_key"], recipe.rating.prompt, token_counter(tokenizer),
                               recipe.rating.llm.sampling.seed)

    return make


def finish(recipe: QualityRecipe, storage: Storage, key: str, path: str, results: list[dict]) -> dict:
    """Parse one shard's answers into columns; write the shard, then its ledger entry."""
    from operators.llm.rating import parse, to_table
    from operators.quality.summary import histogram

    kind = recipe.rating.prompt
    errors = engine_errors(key, results)
    table = read_shard(storage, path)
    answers = {int(r["parent_id"]): r["generated"] for r in results}
    parsed = [parse(kind, answers[i]) for i in range(table.num_rows)]
    ratings = to_table(kind, parsed)
    for field in ratings.schema:
        table = table.append_column(field, ratings.column(field.name))
    target = join(recipe.output, f"{key}.parquet")
    storage.write_atomic(target, lambda out: pq.write_table(table, out, compression=recipe.compression))
    scores = ratings.column(SCORE_COLUMN[kind]).to_numpy(zero_copy_only=False).astype(np.float32)
    reasons = Counter(r for _, r in parsed if r)
    summary = {"docs": table.num_rows, "rated": table.num_rows - sum(reasons.values()), "reasons": dict(reasons),
               "histograms": {SCORE_COLUMN[kind]: histogram(scores, 0, 5)},
               "tokens_in": sum(r["tokens_in"] for r in results), "tokens_out": sum(r["tokens_out"] for r in results)}
    entry = {"shard": key, "crawl": shard_of(path)[0], "input": storage.stat(path), "outputs": {"data": target},
             "summary": summary, **({"engine_errors": errors} if errors else {})}
    return commit_entry(storage, join(recipe.output, "_ledger", f"{key}.json"), entry)


def run(recipe: QualityRecipe, storage: Storage) -> dict:
    """Rate the shards not rated yet; return the stats (RuntimeError after writing them if shards were left).
    Called by the classify job, which holds the output."""
    started = time.time()
    paths, todo, ledger = plan(recipe, storage)
    failed, retried, session = [], [], []
    if todo:
        rating = recipe.rating
        try:
            stream(rating.llm, recipe.ray, storage, join(recipe.output, "_parts"), {k: paths[k] for k in todo},
                   _requests(recipe.model_dump(), rating.tokenizer or rating.llm.model),
                   lambda key, results: finish(recipe, storage, key, paths[key], results), session, retried)
        except Exception as err:  # noqa: BLE001 - reported with the shards it left unfinished, then raised
            reason = failure(err, recipe.ray, rating.llm, session[0] if session else None, started)
            done = recorded(storage, ledger)
            failed = [{"shard": k, "error": reason} for k in todo if k not in done]
            log.error("stopped with %d shard(s) unfinished: %s", len(failed), reason)
    done = finished(storage, ledger, sorted(paths))
    total: dict = {}
    for entry in done.values():
        add(total, entry["summary"])
    stats = {"shards": len(done), "documents": total.get("docs", 0), "rated": total.get("rated", 0),
             "reasons": total.get("reasons", {}), "histograms": total.get("histograms", {}),
             "tokens_in": total.get("tokens_in", 0), "tokens_out": total.get("tokens_out", 0),
             "model": recipe.rating.llm.model, "prompt": recipe.rating.prompt,
             "wall_seconds": round(time.time() - started, 2), "retried": retried, "failed": failed}
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) not finished: {failed[0]['error']}")
    return stats
