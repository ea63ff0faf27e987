"""Export job: a mixture's documents as shuffled, tokenized training shards (Megatron-LM or datatrove files).

    python -m jobs.export --config jobs/recipes/export.yaml --set input=<run> --set output=<run>/export

Phase A tokenizes each input file on a Ray task into a token cache sorted by copy key (``_work/tokens/``,
ledger ``_ledger/tokens/``); the driver sums the caches' token histograms over the key bins into the shard plan
(``_plan.json``); phase C writes each shard (``shard-NNNNN.bin/.idx`` or ``.ds/.ds.index``) from the key
range it owns (ledger ``_ledger/shards/``). ``manifest.json`` is written last, then ``_work/`` is removed. A
killed run resumes from its ledgers and writes the same bytes; a re-run of a finished export does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jobs.common.checks import check_parquet_input
from jobs.common.cli import job_main, start_ray
from jobs.common.progress import Progress
from jobs.export.checks import check
from jobs.export.manifest import manifest
from jobs.export.recipe import ExportRecipe
from jobs.export.shards import shard_files
from jobs.export.sources import input_files, names_under
from jobs.export.tokens import cache_paths
from operators.export import datatrove_ds, megatron
from operators.export.keys import BINS
from operators.export.phases import FINAL, names
from operators.export.plan import final_cut, phase_bins, shard_ranges
from operators.export.tokenize import ExportTokenizer
from operators.io.ledger import THREADS, read_entries, to_do
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join

log = logging.getLogger("cc_refinery.export")


def _hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def tokenizer_info(recipe: ExportRecipe, tokenizer: ExportTokenizer) -> dict:
    writer = megatron if recipe.format == "megatron" else datatrove_ds
    return {"name": recipe.tokenizer, "sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id, "dtype": writer.dtype_for(tokenizer.vocab_size).name,
            "engine": tokenizer.engine}


def _settings(recipe: ExportRecipe, info: dict) -> str:
    """What a token cache depends on besides its input file."""
    return _hash({"tokenizer": info["sha256"], "eos": info["eos_id"], "seed": recipe.seed, "weights": recipe.weights,
                  "curriculum": recipe.curriculum.model_dump() if recipe.curriculum else None})


def run(recipe: ExportRecipe) -> dict:
    """Run the job; return its summary (the manifest has the rest)."""
    tokenizer = check(recipe, hub=True)
    check_parquet_input(recipe)  # before the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        started = time.time()
        storage.sweep_staging(recipe.output)
        info = tokenizer_info(recipe, tokenizer)
        settings = _settings(recipe, info)
        files = input_files(storage, recipe.input)
        if not files:
            raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
        with ThreadPoolExecutor(THREADS) as pool:
            stats = dict(zip(files, pool.map(storage.stat, files.values()), strict=True))
        fingerprint = _hash({"settings": settings, "format": recipe.format, "shard_tokens": recipe.shard_tokens,
                             "inputs": stats})
        plan = _current_plan(storage, recipe, fingerprint)
        done = join(recipe.output, "manifest.json")
        if plan is not None and not _missing_shards(storage, recipe, plan) and storage.exists(done):
            log.info("the export in %s is finished: nothing to do", recipe.output)
            _clean(storage, recipe)
            return _stats(json.loads(storage.read_bytes(done)), done, started)
        if plan is None or _missing_shards(storage, recipe, plan):
            start_ray(recipe.ray)
            caches = _tokenize(storage, recipe, files, settings)  # none to do if the plan's caches are all there
            if plan is None:
                plan = _plan(storage, recipe, caches, fingerprint)
            _write_shards(storage, recipe, plan, info)
        result = manifest(storage, recipe, plan, info)
        storage.write_text(done, json.dumps(result, indent=1))
        _clean(storage, recipe)
        return _stats(result, done, started)


def _stats(result: dict, uri: str, started: float) -> dict:
    return {"shards": len(result["shards"]), "documents": result["documents"], "tokens": result["tokens"],
            "phases": [p["name"] for p in result["phases"]], "manifest": uri,
            "wall_seconds": round(time.time() - started, 2)}


def _clean(storage: Storage, recipe: ExportRecipe) -> None:
    """Remove the token caches and their ledger once every shard is written (unless ``keep_work``)."""
    if not recipe.keep_work:
        storage.delete_tree(join(recipe.output, "_work"))
        storage.delete_tree(join(recipe.output, "_ledger", "tokens"))


def _current_plan(storage: Storage, recipe: ExportRecipe, fingerprint: str) -> dict | None:
    """The saved plan if it was made for these inputs and settings; else None, with the shards written for
    another plan removed (they are redone)."""
    uri = join(recipe.output, "_plan.json")
    if not storage.exists(uri):
        return None
    plan = json.loads(storage.read_bytes(uri))
    if plan["fingerprint"] == fingerprint:
        return plan
    log.info("the inputs or settings changed since the saved shard plan: every shard is redone")
    for shard in plan["shards"]:
        for path in plan["files"][shard["name"]].values():
            if storage.exists(path):
                storage.delete(path)
    storage.delete_tree(join(recipe.output, "_ledger", "shards"))
    for stale in (join(recipe.output, "manifest.json"), uri):
        if storage.exists(stale):
            storage.delete(stale)
    return None


def _missing_shards(storage: Storage, recipe: ExportRecipe, plan: dict) -> list[dict]:
    done = set(storage.listdir(join(recipe.output, "_ledger", "shards")))
    return [s for s in plan["shards"] if f"{s['name']}.json" not in done]


def _tokenize(storage: Storage, recipe: ExportRecipe, files: dict[str, str], settings: str) -> list[dict]:
    """Phase A: the input files without a current token cache, one Ray task each; return every file's cache."""
    import ray

    from jobs.export.tokens import tokenize_file

    ledger = join(recipe.output, "_ledger", "tokens")
    recorded = set(names_under(storage, ledger, storage.walk(ledger, ".json"), ".json"))
    keys = sorted(recorded & set(files))
    caches = join(recipe.output, "_work", "tokens")
    cached = {join(caches, name) for name in names_under(storage, caches, storage.walk(caches, ""), "")}  # one listing
    stale = [key for key, entry in zip(keys, read_entries(storage, [join(ledger, f"{k}.json") for k in keys]),
                                       strict=True)
             if entry.get("settings") != settings or not all(p in cached for p in entry["outputs"].values())]
    if stale:
        log.info("%d token cache(s) missing or made with other settings: redone", len(stale))
    for key in stale:
        storage.delete(join(ledger, f"{key}.json"))
        recorded.discard(key)
    todo, changed = to_do(storage, files, lambda key: join(ledger, f"{key}.json"), recorded)
    if changed:
        log.info("%d input file(s) changed since they were tokenized: redone", len(changed))
    task = ray.remote(num_cpus=1)(tokenize_file)
    raw = recipe.model_dump()
    tasks = {task.remote(raw, key, files[key], settings): key for key in todo}
    _wait(tasks, Progress("export tokenize", len(tasks)), lambda entry: entry["summary"]["docs"], "input file")
    return [{"name": key, **cache_paths(recipe.output, key)} for key in files]


def _phases(recipe: ExportRecipe, histogram: np.ndarray) -> list[tuple[str, range]]:
    """(name, bin range) of each phase that holds tokens, in order; the final phase cut to its share."""
    if recipe.curriculum is None:
        return [("all", range(BINS))]
    named = names(recipe.curriculum.column)
    phases = [(named[p], phase_bins(p)) for p in sorted(named) if p != FINAL and histogram[phase_bins(p)].any()]
    final = recipe.curriculum.final
    if final is not None and histogram[phase_bins(FINAL)].any():
        main = histogram[:phase_bins(FINAL).start].sum()
        target = final.fraction * main / (1 - final.fraction)
        if histogram[phase_bins(FINAL)].sum() < target:
            log.warning("curriculum.final: its documents x max_repeats hold %d tokens, short of the %d wanted "
                        "(fraction %g): raise max_repeats or name more kinds", histogram[phase_bins(FINAL)].sum(),
                        target, final.fraction)
        cut = final_cut(histogram, FINAL, target)
        phases.append(("final", range(phase_bins(FINAL).start, cut)))
    return phases


def _plan(storage: Storage, recipe: ExportRecipe, caches: list[dict], fingerprint: str) -> dict:
    """Phase B: the caches' histograms summed and cut into shards; saved, so a re-run writes the same shards."""
    def read(cache: dict) -> tuple[np.ndarray, dict]:
        with storage.open_read(cache["histogram"]) as f:
            histogram = np.load(f)
        return histogram, json.loads(storage.read_bytes(join(recipe.output, "_ledger", "tokens",
                                                             f"{cache['name']}.json")))["summary"]

    histogram = np.zeros(BINS, np.int64)
    inputs = {"files": len(caches), "documents": 0, "bad": {}}
    with ThreadPoolExecutor(THREADS) as pool:  # two small reads per input file, in parallel, a window at a time
        read_back = (r for start in range(0, len(caches), 4 * THREADS)
                     for r in pool.map(read, caches[start:start + 4 * THREADS]))
        for part, summary in read_back:
            histogram += part
            inputs["documents"] += summary["docs"]
            for reason, n in summary["bad"].items():
                inputs["bad"][reason] = inputs["bad"].get(reason, 0) + n
    phases = _phases(recipe, histogram)
    shards = shard_ranges(histogram, recipe.shard_tokens, [span for _, span in phases])
    for number, shard in enumerate(shards):
        shard.update(name=f"shard-{number:05d}", phase=phases[shard["phase"]][0])
    plan = {"fingerprint": fingerprint, "inputs": inputs, "shards": shards, "caches": caches,
            "phases": [p for p, _ in phases],
            "files": {s["name"]: shard_files(recipe.output, s["name"], recipe.format) for s in shards}}
    storage.write_text(join(recipe.output, "_plan.json"), json.dumps(plan, indent=1))
    log.info("plan: %d shard(s) over %d phase(s), %d tokens", len(shards), len(phases),
             sum(s["tokens"] for s in shards))
    return plan


def _write_shards(storage: Storage, recipe: ExportRecipe, plan: dict, info: dict) -> None:
    """Phase C: each planned shard without a ledger entry, one Ray task each."""
    import ray

    from jobs.export.shards import write_shard

    todo = _missing_shards(storage, recipe, plan)
    task = ray.remote(num_cpus=1)(write_shard)
    raw = recipe.model_dump()
    caches = ray.put(plan["caches"])
    tasks = {task.remote(raw, shard, caches, info): shard["name"] for shard in todo}
    _wait(tasks, Progress("export shards", len(tasks)), lambda entry: entry["documents"], "shard")


def _wait(tasks: dict, progress: Progress, docs, what: str) -> None:
    """Wait for every task (``{ref: name}``), logging progress; then RuntimeError naming the failed ones, if any
    (their ledger entries are missing, so a re-run does them again)."""
    import ray

    pending, failed = list(tasks), []
    while pending:
        ready, pending = ray.wait(pending)
        try:
            progress.shard_done(docs(ray.get(ready[0])))
        except Exception as err:  # noqa: BLE001 - reported with the others once every task is done
            reason = " ".join(str(getattr(err, "cause", None) or err).split())[:500]
            log.error("%s %s failed: %s", what, tasks[ready[0]], reason)
            failed.append(f"{tasks[ready[0]]}: {reason}")
    if failed:
        raise RuntimeError(f"{len(failed)} {what}(s) failed, first {failed[0]}")


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.export", ExportRecipe, run, ("shards", "documents", "tokens",
                                                                          "wall_seconds"), argv)
