"""The work a recipe asks for, stage by stage, given the documents read: core-hours, GPU-hours, LLM tokens.

A curation recipe is one curate stage; a mixture is curate, dedup, quality and its synthesis recipes,
loaded with their ``set`` overrides as ``jobs.pipeline`` loads them. Recipes are read with the models the
dispatcher's table names (``jobs/dispatch.py``), so the planner imports no other job. The formulas are in
``jobs/plan/job.py``'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pydantic import BaseModel

from jobs.common.recipe import load_model
from jobs.dispatch import job_for, recipe_model
from jobs.plan.config import PlanConfig
from operators.llm.engine import LLMConfig
from operators.llm.prompts import Prompt, load_prompt

BUCKETS = 20  # quality_bucket runs 0-19
ALL = (0, BUCKETS - 1)


@dataclass
class Row:
    stage: str
    what: str
    docs: float
    core_hours: float = 0.0
    gpu_hours: float = 0.0
    requests: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def recipe_rows(path: str, docs: float, cfg: PlanConfig) -> list[Row]:
    """Rows for a curation recipe or a mixture, ``docs`` being the WARC response records read."""
    job = job_for(path, "--recipe")
    if job == "pipeline":
        return mixture_rows(load_model(recipe_model("pipeline"), path, key="--recipe"), docs, cfg)
    if job == "curate":
        return [curate_row(load_model(recipe_model("curate"), path, key="--recipe"), docs, cfg)]
    raise ValueError(f"--recipe: {path} is a {job} recipe, neither a curation recipe nor a mixture")


def request_rows(path: str, shards: int, cfg: PlanConfig) -> list[dict]:
    """S3 requests on the run's bucket of each job the recipe runs (a mixture: one per synthesis recipe), for
    ``shards`` shards, with their cost."""
    job = job_for(path, "--recipe")
    stages = [("curate", path)] if job == "curate" else []
    if job == "pipeline":
        mixture = load_model(recipe_model("pipeline"), path, key="--recipe").stages
        stages = [("curate", mixture.curate.recipe), ("dedup", mixture.dedup.recipe),
                  ("quality", mixture.quality.recipe), *(("synth", s.recipe) for s in mixture.synthesize)]
    rows = []
    for stage, what in stages:
        figures = cfg.stage_requests.get(stage)
        if figures is None:
            raise ValueError(f"stage_requests: no {stage} figures (python -m benchmarks.control_plane measures them)")
        per_shard = figures.model_dump()
        rows.append({"stage": stage, "what": what, **{k: v * shards for k, v in per_shard.items()},
                     "requests": sum(per_shard.values()) * shards, "cost": figures.priced(cfg.prices) * shards})
    return rows


def curate_row(recipe: BaseModel, docs: float, cfg: PlanConfig) -> Row:
    return Row("curate", f"{recipe.name}: read, extract, filter", docs,
               core_hours=docs / cfg.cpu.curate_docs_per_core_s / 3600)


def mixture_rows(mixture: BaseModel, docs: float, cfg: PlanConfig) -> list[Row]:
    stages, d = mixture.stages, cfg.documents
    rows = [curate_row(load_model(recipe_model("curate"), stages.curate.recipe, stages.curate.set), docs, cfg)]
    curated = docs * d.curate_kept
    rows.append(Row("dedup", "exact + MinHash (Spark)", curated,
                    core_hours=curated * d.words_per_doc / cfg.cpu.dedup_words_per_core_s / 3600))
    deduped = curated * d.dedup_kept
    quality = load_model(recipe_model("classify"), stages.quality.recipe, stages.quality.set)
    rows += quality_rows(quality, deduped, cfg)
    cdf = bucket_cdf(cfg, quality)
    for stage in stages.synthesize:
        synth = load_model(recipe_model("synthesize"), stage.recipe, [*stage.set, "mix=false"])
        rows += synth_rows(synth, deduped, cdf, cfg)
    return rows


def quality_rows(recipe: BaseModel, docs: float, cfg: PlanConfig) -> list[Row]:
    rows = []
    for c in recipe.classifiers:
        if c.kind == "fasttext":
            rows.append(Row("quality", f"{c.name}: fastText", docs,
                            core_hours=docs / cfg.cpu.fasttext_docs_per_core_s / 3600))
        elif c.device == "cpu":
            rows.append(Row("quality", f"{c.name}: {c.model} (cpu)", docs,
                            core_hours=docs / cfg.cpu.transformer_docs_per_core_s / 3600))
        else:
            rates = cfg.quality.classifier_docs_per_gpu_s
            if cfg.gpu not in rates:
                raise ValueError(f"quality.classifier_docs_per_gpu_s: no {cfg.gpu} figure")
            rows.append(Row("quality", f"{c.name}: {c.model}", docs, gpu_hours=docs / rates[cfg.gpu] / 3600))
    if recipe.rating:
        llm = recipe.rating.llm
        rows.append(llm_row("quality", f"rating: {recipe.rating.prompt}", docs, load_prompt(recipe.rating.prompt),
                            False, llm.sampling.max_tokens, llm, llm.model, cfg))
    return rows


def bucket_cdf(cfg: PlanConfig, quality: BaseModel) -> list[float] | None:
    """Share of documents at or below each quality bucket, or None when nothing says."""
    if cfg.quality.bucket_shares:
        return [sum(cfg.quality.bucket_shares[: b + 1]) for b in range(BUCKETS)]
    exponent = cfg.quality.bucket_exponent or (len(quality.buckets.classifiers) if quality.buckets else None)
    return None if exponent is None else [((b + 1) / BUCKETS) ** exponent for b in range(BUCKETS)]


def band_share(cdf: list[float] | None, band: tuple[int, int], where: str) -> float:
    """Share of documents with ``band[0] <= quality_bucket <= band[1]``."""
    lo, hi = max(band[0], 0), min(band[1], BUCKETS - 1)
    if (lo, hi) == ALL:
        return 1.0
    if cdf is None:
        raise ValueError(f"{where}: the quality recipe has no buckets; set quality.bucket_exponent or bucket_shares")
    return 0.0 if lo > hi else cdf[hi] - (cdf[lo - 1] if lo else 0.0)


def _bucket_column(column: str, where: str) -> None:
    if column != "quality_bucket":
        raise ValueError(f"{where}: the planner knows the shares of quality_bucket bands only, not {column!r}")


def synth_rows(recipe: BaseModel, docs: float, cdf: list[float] | None, cfg: PlanConfig) -> list[Row]:
    """One row per prompt (ProX: per pass) of a synthesis recipe, on its ``select`` band and ``routing`` groups."""
    band, fraction = ALL, 1.0
    if recipe.select:
        s = recipe.select
        _bucket_column(s.column, f"{recipe.name}: select.column")
        band = (ALL[0] if s.min is None else math.ceil(s.min), ALL[1] if s.max is None else math.floor(s.max))
        fraction = s.fraction
    llm, rows = recipe.llm, []

    def share(group: tuple[int, int]) -> float:
        both = (max(band[0], group[0]), min(band[1], group[1]))
        return docs * fraction * band_share(cdf, both, f"{recipe.name}: quality_bucket")

    if recipe.prox:
        p = recipe.prox
        sent = share(ALL)
        rows.append(llm_row("synth", f"{recipe.name}: {p.doc_prompt}", sent, load_prompt(p.doc_prompt), False,
                            p.doc_max_tokens, llm, p.doc_model or llm.model, cfg))
        rows.append(llm_row("synth", f"{recipe.name}: {p.chunk_prompt}", sent, load_prompt(p.chunk_prompt), True,
                            p.chunk_max_tokens, llm, llm.model, cfg))
        return rows
    if recipe.routing:
        r = recipe.routing
        _bucket_column(r.column, f"{recipe.name}: routing.column")
        low_top = math.ceil(r.threshold) - 1 if r.low_max is None else math.floor(r.low_max)
        groups = [(r.high, (math.ceil(r.threshold), ALL[1])), (r.low, (ALL[0], low_top))]
    else:
        groups = [(recipe.prompts, ALL)]
    for names, group in groups:
        for name in names:
            prompt = load_prompt(name)
            whole = prompt.family != "tpt" or recipe.tpt.segmented
            rows.append(llm_row("synth", f"{recipe.name}: {name}", share(group), prompt, whole,
                                llm.sampling.max_tokens, llm, llm.model, cfg))
    return rows


def template_tokens(prompt: Prompt, cfg: PlanConfig) -> float:
    """Tokens a request adds around its chunk: the prompt's own words and the chat template's markers."""
    words = len(prompt.system.split()) + len(prompt.user.replace("{text}", " ").split())
    return words * cfg.documents.tokens_per_word + cfg.llm.chat_tokens


def llm_row(stage: str, what: str, docs: float, prompt: Prompt, whole: bool, max_tokens: int, llm: LLMConfig,
            model: str, cfg: PlanConfig) -> Row:
    """GPU-hours of one prompt on ``docs`` documents: chunked whole, or only their start (``whole`` false)."""
    tokens = cfg.documents.words_per_doc * cfg.documents.tokens_per_word
    budget = prompt.max_input_tokens
    chunks = math.ceil(tokens / budget) if whole else 1
    chunk = tokens / chunks if whole else min(tokens, budget)
    family = cfg.llm.families.get(prompt.family)
    if family is None:
        raise ValueError(f"llm.families: no answer figures for prompt family {prompt.family!r} ({prompt.name})")
    requests = docs * chunks
    tokens_in = requests * (template_tokens(prompt, cfg) + chunk)
    tokens_out = requests * min(family.answer_ratio * chunk + family.answer_tokens, max_tokens)
    rates = cfg.llm.rates(model, cfg.gpu)
    seconds = tokens_in / rates.input_tokens_s + tokens_out / rates.output_tokens_s
    return Row(stage, f"{what} ({model} x{llm.tensor_parallel_size})", docs,
               gpu_hours=seconds * llm.tensor_parallel_size / 3600, requests=requests, input_tokens=tokens_in,
               output_tokens=tokens_out)
