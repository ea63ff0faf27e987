"""The end-to-end mixture: filter -> dedup -> quality -> rephrase / rewrite / think -> [decontaminate] -> manifest
-> [export].

    python -m jobs.pipeline --config jobs/recipes/mixture.yaml        (make pipeline)

Each stage is its own job on its own recipe (``stages.<stage>.recipe``, with ``set`` overrides),
reading the previous stage's output under ``<root>/<name>/`` and resuming on its own ledgers; the
synthesis stages run without ``mix`` so every document is counted once. Dedup is global, so it is
re-run only when the curated shards changed. ``mixture.json`` (written last) counts documents and
tokens (whitespace words) per kind (real, rephrased, rewritten, refined, thought), per prompt and
per crawl and per language (with tokens after rehydration where the dedup job gave ``rehydration_repeats``),
from the stage outputs, counted on Ray workers. With ``stages.decontaminate`` each source (``quality/``, each
``synth/<recipe>/``) is decontaminated into ``decontam/<source>/`` first and the manifest counts those; with
``stages.export`` the export job then writes ``export/`` from ``mixture.json``'s sources. The ``storage`` and
``ray`` keys set here apply to every stage too. One run at a time holds ``<root>/<name>/``; a run started
under a lease (the sentinel's) checks before each stage and before ``mixture.json`` that no newer attempt took it
over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from jobs import classify, curate, decontaminate, dedup, export, synthesize
from jobs.common.cli import job_main, start_ray
from jobs.common.recipe import load_model
from jobs.pipeline.checks import StageRecipe, check_stages
from jobs.pipeline.recipe import MixtureRecipe
from operators.export.kinds import kind_of
from operators.io.ledger import check_fence
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join

log = logging.getLogger("cc_refinery.pipeline")


def _fingerprint(storage: Storage, ledger: str) -> str:
    """The curated shards as their ledger entries say (names and finish times)."""
    entries = sorted(storage.listdir(ledger))
    stamps = [json.loads(storage.read_bytes(join(ledger, e))).get("finished_at") for e in entries]
    return hashlib.blake2b(json.dumps([entries, stamps]).encode(), digest_size=16).hexdigest()


def _shared(recipe: MixtureRecipe) -> list[str]:
    """The ``storage`` and ``ray`` keys this recipe sets, as overrides for every stage (a stage's ``set`` wins)."""
    return [f"{block}.{key}={json.dumps(value)}" for block in ("storage", "ray")
            for key, value in getattr(recipe, block).model_dump(exclude_unset=True).items()]


def _dedup(dedup_recipe, storage: Storage, base: str) -> None:
    marker, fingerprint = join(base, "dedup", "_pipeline.json"), _fingerprint(storage, join(base, "filter", "_ledger"))
    if storage.exists(marker) and json.loads(storage.read_bytes(marker)).get("filter") == fingerprint:
        log.info("dedup: the curated shards did not change, kept")
        return
    dedup.run(dedup_recipe)
    storage.write_text(marker, json.dumps({"filter": fingerprint}))


def sources(recipe: MixtureRecipe) -> list[str]:
    """The folders of the final documents under ``<root>/<name>/``: the quality output, then each synthesis's."""
    return ["quality", *(f"synth/{Path(stage.recipe).stem}" for stage in recipe.stages.synthesize)]


def stage_recipes(recipe: MixtureRecipe) -> list[StageRecipe]:
    """Every stage's recipe, loaded with the overrides it runs with (inputs and outputs under ``<root>/<name>/``);
    a bad key in any of them stops the pipeline here, naming the stage."""
    base, stages, shared = join(recipe.root, recipe.name), recipe.stages, _shared(recipe)
    crawl = [f"input.crawl={recipe.crawl}"] if recipe.crawl else []
    synth = [(f"stages.synthesize.{i}", synthesize, synthesize.SynthRecipe, stage,
              [f"input={join(base, 'quality')}", "mix=false", f"output={join(base, 'synth', Path(stage.recipe).stem)}"])
             for i, stage in enumerate(stages.synthesize)]
    specs = [("stages.curate", curate, curate.Recipe, stages.curate,
              [f"input.paths={json.dumps(recipe.input)}", *crawl, f"output.root={recipe.root}",
               f"output.run={recipe.name}"]),
             ("stages.dedup", dedup, dedup.DedupRecipe, stages.dedup,
              [f"input={join(base, 'filter')}", f"output={join(base, 'dedup')}"]),
             ("stages.quality", classify, classify.QualityRecipe, stages.quality,
              [f"input={join(base, 'dedup')}", f"output={join(base, 'quality')}"]), *synth]
    if stages.decontaminate:
        specs += [("stages.decontaminate", decontaminate, decontaminate.DecontamRecipe, stages.decontaminate,
                   [f"input={join(base, source)}", f"output={join(base, 'decontam', source)}"])
                  for source in sources(recipe)]
    if stages.export:
        specs.append(("stages.export", export, export.ExportRecipe, stages.export,
                      [f"input={base}", f"output={join(base, 'export')}"]))
    loaded = []
    for key, job, model, stage, paths in specs:
        named = StageRecipe(key, stage.recipe, job, None)
        with named.naming():
            named.recipe = load_model(model, stage.recipe, [*shared, *stage.set, *paths], key="recipe")
        loaded.append(named)
    return loaded


def _count(raw: dict):
    """A ``map`` function: one output file -> its documents, tokens and rehydrated tokens (tokens times
    ``rehydration_repeats`` where the dedup job gave them) by (kind, prompt, crawl, language), as JSON."""

    def run(row: dict) -> dict:
        import pyarrow.parquet as pq

        from operators.quality.summary import token_counts

        storage = Storage(**raw)
        fs, inner = storage.filesystem(row["path"])
        names = pq.read_schema(inner, filesystem=fs).names
        wanted = ("text", "crawl", "synth_task", "synth_prompt", "language", "rehydration_repeats")
        table = pq.read_table(inner, filesystem=fs, columns=[c for c in wanted if c in names])

        def column(name: str) -> list:
            return table.column(name).to_pylist() if name in names else [None] * table.num_rows

        tokens = token_counts(table.column("text").combine_chunks())
        counts: dict[str, list[int]] = {}
        for task, prompt, crawl, language, reps, n in zip(
                column("synth_task"), column("synth_prompt"), column("crawl"), column("language"),
                column("rehydration_repeats"), tokens.tolist(), strict=True):
            key = json.dumps([kind_of(task) if row["synthetic"] else "real", prompt, crawl, language])
            total = counts.setdefault(key, [0, 0, 0])
            total[0] += 1
            total[1] += n
            total[2] += n * (reps or 1)
        return {"counts": json.dumps(counts)}

    return run


def manifest(recipe: MixtureRecipe, storage: Storage, base: str, folders: list[str]) -> dict:
    """``mixture.json``: documents and tokens per kind, per prompt, per crawl and per language of the final
    corpus (``folders``: the quality output's, then each synthesis's), and tokens after rehydration (each
    document times its ``rehydration_repeats``)."""
    import ray

    sources = [(folder, i > 0) for i, folder in enumerate(folders)]
    rows = [{"path": p, "synthetic": synthetic} for folder, synthetic in sources
            for p in storage.walk(folder, ".parquet")]
    totals: dict[str, list[int]] = {}
    if rows:
        counted = ray.data.from_items(rows, override_num_blocks=len(rows)).map(_count(recipe.storage.model_dump()),
                                                                               num_cpus=0.25)
        for row in counted.iter_rows():
            for key, values in json.loads(row["counts"]).items():
                total = totals.setdefault(key, [0, 0, 0])
                for i, value in enumerate(values):
                    total[i] += value
    out: dict = {"run": base, "sources": [folder for folder, _ in sources]}
    for level, index in (("kinds", 0), ("prompts", 1), ("crawls", 2), ("languages", 3)):
        grouped: dict = {}
        for key, (docs, words, rehydrated) in totals.items():
            name = json.loads(key)[index] or "none"
            entry = grouped.setdefault(name, {"documents": 0, "tokens": 0, "tokens_rehydrated": 0})
            entry["documents"] += docs
            entry["tokens"] += words
            entry["tokens_rehydrated"] += rehydrated
        out[level] = dict(sorted(grouped.items()))
    out["documents"] = sum(d for d, _, _ in totals.values())
    out["tokens"] = sum(w for _, w, _ in totals.values())
    out["tokens_rehydrated"] = sum(r for _, _, r in totals.values())
    return out


def run(recipe: MixtureRecipe) -> dict:
    """Check every stage, then run them in order (each resumes on its ledgers), then write ``mixture.json``."""
    storage = Storage(**recipe.storage.model_dump())
    check_fence(storage)  # a superseded sentinel attempt does nothing at all
    stages = stage_recipes(recipe)
    check_stages(recipe.ray, stages)
    with RunLock(storage, join(recipe.root, recipe.name)):
        return _run(recipe, storage, [stage.recipe for stage in stages])


def _run(recipe: MixtureRecipe, storage: Storage, stages: list) -> dict:
    """Every stage, once this process holds the run's folder (each stage also holds its own output)."""
    started = time.time()
    base = join(recipe.root, recipe.name)
    curation, dedup_stage, quality, *rest = stages
    synthesis = [s for s in rest if isinstance(s, synthesize.SynthRecipe)]
    cleaning = [s for s in rest if isinstance(s, decontaminate.DecontamRecipe)]
    exporting = [s for s in rest if isinstance(s, export.ExportRecipe)]
    check_fence(storage)
    curate.run(curation)
    check_fence(storage)
    _dedup(dedup_stage, storage, base)
    check_fence(storage)
    classify.run(quality)
    for stage in synthesis:
        check_fence(storage)
        synthesize.run(stage)
    for stage in cleaning:
        check_fence(storage)
        decontaminate.run(stage)
    start_ray(recipe.ray)
    folders = [s.output for s in cleaning] or [quality.output, *(s.output for s in synthesis)]
    result = manifest(recipe, storage, base, folders)
    result["wall_seconds"] = round(time.time() - started, 2)
    check_fence(storage)
    storage.write_text(join(base, "mixture.json"), json.dumps(result, indent=1))
    for stage in exporting:
        check_fence(storage)
        shards = export.run(stage)
        result["export"] = {key: shards[key] for key in ("shards", "documents", "tokens", "manifest")}
    return result


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.pipeline", MixtureRecipe, run, ("documents", "tokens", "kinds"), argv)
