"""LLM generation job (rephrase, ...): documents -> prompts -> vLLM on Ray Data -> validated synthetic text.

    python -m jobs.synthesize --config jobs/recipes/rephrase-wrap.yaml --set input=<run>/dedup \\
        --set llm.model=Qwen/Qwen2.5-7B-Instruct --set llm.replicas=8

Requests (one per document x prompt x chunk) are made on Ray workers and streamed through the
engine; the driver gathers each shard's results and, once a shard is complete, writes it whole:
``<output>/<crawl>/<shard>.parquet`` (synthetic rows, plus the real documents with ``mix``),
``<output>/_rejected/...`` (outputs failing validation, with ``synth.<rule>``), then the ledger
entry ``<output>/_ledger/<crawl>/<shard>.json``. A re-run skips shards with a ledger entry.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
from pydantic import Field, model_validator

from jobs.cli import job_main
from jobs.config import Compression, StorageConfig
from jobs.generation import stream
from jobs.llm_cluster import LLMRayConfig, failure
from jobs.preflight import check_parquet_input, check_synthesize
from jobs.refine import ProxConfig, refine_shards
from operators.io.layout import shard_of
from operators.io.ledger import commit_entry
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join
from operators.llm.engine import LLMConfig, engine_errors
from operators.llm.prompts import load_prompt
from operators.params import Strict

log = logging.getLogger("cc_refinery.synthesize")


class RoutingConfig(Strict):
    column: str = Field(description="a numeric quality column of the input")
    threshold: float
    high: list[str] = Field(description="prompts for documents at or above the threshold")
    low: list[str] = Field(description="prompts for documents at or below low_max (all others if unset)")
    low_max: float | None = Field(None, description="documents between low_max and threshold get no prompt")


class ValidationConfig(Strict):
    copy_jaccard: float = Field(0.9, ge=0, le=1, description="outputs this close to their input are copies")
    check_language: bool = True
    min_faithfulness: float = Field(0.5, ge=0, le=1, description="share of the source's names and numbers an "
                                                                  "output must keep (synth.unfaithful)")
    faithfulness_families: list[str] = Field(["wrap", "rewire"], description="prompt families the rule applies to")


class SelectConfig(Strict):
    """Only documents whose ``column`` lies in [min, max] are sent (REWIRE rewrites a quality band), or a
    ``fraction`` of them (the mixture gives a share to TPT)."""

    column: str
    min: float | None = None
    max: float | None = None
    fraction: float = Field(1.0, gt=0, le=1, description="a deterministic share (by id) of the documents in the band")


class PostFilterConfig(Strict):
    """REWIRE's post-filter: outputs scored by a fastText quality classifier (DCLM's by default), the top
    share of each shard kept; every output records its source's score and its own."""

    model: str = Field("mlfoundations/fasttext-oh-eli5", description="fastText model: path, s3:// URI or hub id")
    label: str = "__label__hq"
    top_fraction: float = Field(0.5, gt=0, le=1, description="of the valid outputs of a shard, by score_after")


class TptConfig(Strict):
    separator: str = Field("\n\n", description="between the document and its thinking")
    wrap: tuple[str, str] | None = Field(("<think>", "</think>"), description="around the thinking; null: none")
    segmented: bool = Field(False, description="think about every segment of a long document, not just its start")


class SynthRecipe(Strict):
    name: str
    task: str = "rephrase"
    input: str
    output: str
    storage: StorageConfig = Field(default_factory=StorageConfig)
    prompts: list[str] = Field(default_factory=list, description="every document gets every prompt")
    routing: RoutingConfig | None = None
    mix: bool = Field(True, description="keep the real documents next to their synthetic versions")
    llm: LLMConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    select: SelectConfig | None = None
    tpt: TptConfig = Field(default_factory=TptConfig)
    prox: ProxConfig | None = Field(None, description="ProX program refinement (two passes) instead of prompts")
    post_filter: PostFilterConfig | None = None
    tokenizer: str | None = Field(None, description="tokenizer for chunking; default: the model's")
    compression: Compression = "zstd"
    ray: LLMRayConfig = Field(default_factory=LLMRayConfig)

    @model_validator(mode="after")
    def _prompts_exist(self):
        names = self.prompts + (self.routing.high + self.routing.low if self.routing else [])
        if not names and not self.prox:
            raise ValueError("prompts: give prompts, routing with high and low prompts, or a prox block")
        if names and self.prox:
            raise ValueError("prox: a ProX recipe takes its prompts from the prox block, not prompts or routing")
        if self.prox:
            load_prompt(self.prox.doc_prompt)
            load_prompt(self.prox.chunk_prompt)
        for name in names:
            family = load_prompt(name).family
            if family == "rating":
                raise ValueError(f"prompts: {name} is a rating prompt; rate with jobs.classify (a rating block)")
            if family == "prox":
                raise ValueError(f"prompts: {name} is a ProX prompt; give it in the prox block")
        return self


def _shard_key(path: str) -> str:
    return "/".join(shard_of(path))


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


def finish_shard(recipe: SynthRecipe, storage: Storage, path: str, results: list[dict]) -> dict:
    """Assemble, validate and write one shard, then its ledger entry; return the entry."""
    from operators.llm.assemble import SYNTH_SCHEMA, assemble_shard

    errors = engine_errors(_shard_key(path), results)
    fs, inner = storage.filesystem(path)
    post = recipe.post_filter
    score = _scorer(post.model, post.label, storage) if post else None
    kept, rejected, counts = assemble_shard(
        pq.read_table(inner, filesystem=fs), results, recipe.task, recipe.llm.model, recipe.mix,
        recipe.validation.model_dump(), recipe.tpt.model_dump(), score, post.top_fraction if post else 1.0)
    key = _shard_key(path)
    for table, folder in ((kept, recipe.output), (rejected, join(recipe.output, "_rejected"))):
        if folder == recipe.output or table.num_rows:
            storage.write_atomic(join(folder, f"{key}.parquet"),
                                 lambda out, t=table: pq.write_table(t.cast(SYNTH_SCHEMA), out,
                                                                     compression=recipe.compression))
    entry = {"shard": key, "source": path, "rows": {"data": kept.num_rows, "rejected": rejected.num_rows},
             "outputs": dict(sorted(counts.items())), "requests": len(results),
             "tokens_in": sum(r["tokens_in"] for r in results), "tokens_out": sum(r["tokens_out"] for r in results)}
    if errors:
        entry["engine_errors"] = errors
    return commit_entry(storage, join(recipe.output, "_ledger", f"{key}.json"), entry)


def run(recipe: SynthRecipe) -> dict:
    """Run the job; return its stats (also written to ``<output>/_stats.json``).

    Raises RuntimeError, after writing the stats, when the run stopped before every shard was
    finished (the cluster cannot hold it, the engine keeps dying, nothing moves); finished
    shards stay finished.
    """
    check_synthesize(recipe)
    check_parquet_input(recipe)  # before anything is written: the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        return _run(recipe, storage)


def _run(recipe: SynthRecipe, storage: Storage) -> dict:
    """The run, once this process holds the output."""
    started = time.time()
    storage.sweep_staging(recipe.output)
    paths = {_shard_key(p): p for p in storage.walk(recipe.input, ".parquet")}
    if not paths:
        raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
    done = {k for k in paths if storage.exists(join(recipe.output, "_ledger", f"{k}.json"))}
    todo = sorted(set(paths) - done)
    log.info("%d shards: %d done before, %d to do", len(paths), len(done), len(todo))
    failed = []
    if todo:
        session: list[str] = []
        try:
            if recipe.prox:
                refine_shards(recipe, storage, paths, todo, session)
            else:
                stream(recipe.llm, recipe.ray, storage, join(recipe.output, "_parts"), {k: paths[k] for k in todo},
                       _requests(recipe.model_dump(), recipe.tokenizer or recipe.llm.model),
                       lambda key, results: finish_shard(recipe, storage, paths[key], results), session)
        except Exception as err:  # noqa: BLE001 - reported with the shards it left unfinished, then raised
            reason = failure(err, recipe.ray, recipe.llm, session[0] if session else None, started)
            failed = [{"shard": k, "error": reason} for k in todo
                      if not storage.exists(join(recipe.output, "_ledger", f"{k}.json"))]
            log.error("stopped with %d shard(s) unfinished: %s", len(failed), reason)
    done = [k for k in sorted(paths) if storage.exists(join(recipe.output, "_ledger", f"{k}.json"))]
    entries = [json.loads(storage.read_bytes(join(recipe.output, "_ledger", f"{k}.json"))) for k in done]
    outputs, rows = Counter(), Counter()
    for entry in entries:
        outputs.update(entry["outputs"])
        rows.update(entry["rows"])
    stats = {"shards": len(entries), "rows": dict(rows), "outputs": dict(sorted(outputs.items())),
             "requests": sum(e["requests"] for e in entries), "tokens_in": sum(e["tokens_in"] for e in entries),
             "tokens_out": sum(e["tokens_out"] for e in entries), "model": recipe.llm.model,
             "wall_seconds": round(time.time() - started, 2), "failed": failed}
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) not finished: {failed[0]['error']}")
    return stats


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.synthesize", SynthRecipe, run,
                    ("shards", "rows", "outputs", "wall_seconds"), argv)


if __name__ == "__main__":
    sys.exit(main())
