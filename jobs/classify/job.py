"""Quality job: model-based scores for a run's shards (fastText, transformer classifiers, Nemotron-CC buckets).

    python -m jobs.classify --config jobs/recipes/quality.yaml --set input=<run>/dedup --set output=<run>/quality

Writes ``<output>/<crawl>/<shard>.parquet`` (the input shard with ``<name>_score`` columns, plus
``<name>_int_score`` for transformers and ``quality_bucket``/``quality_label`` with buckets), the
ledger entry ``<output>/_ledger/<crawl>/<shard>.json`` after each shard, saved cut-points under
``<output>/_calibration/`` and ``<output>/_stats.json`` (score histograms, bucket token shares,
drift against the calibration crawl, cache hits, ``retried``, ``failed``). A re-run skips finished shards.
When the cluster loses CPUs mid-run (a node lost), the unfinished shards are planned again for the nodes
left (``jobs/common/shrink.py``) and listed under ``retried``. With a ``rating`` block the documents are
rated by an LLM instead (``jobs/classify/rate.py``).
"""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np

from jobs.classify.checks import check
from jobs.classify.recipe import QualityRecipe
from jobs.classify.shards import plan
from jobs.common.checks import check_parquet_input
from jobs.common.cli import job_main, start_ray
from jobs.common.llm_cluster import failure, wait_for
from jobs.common.progress import Progress
from operators.io.ledger import finished, recorded
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, join

log = logging.getLogger("cc_refinery.classify")
HELPER_STAGES = 3  # prepare, write, and calibration's sample stage
MIN_CPUS = 0.05


def _cpu_replicas(recipe: QualityRecipe) -> int:
    return sum(c.replicas for c in recipe.transformers if c.device == "cpu")


def _replica_cpus(recipe: QualityRecipe, cpus: float) -> float:
    """CPUs each CPU classifier replica asks for (and uses as torch threads): an equal share of three
    quarters of the cluster; the rest is for the helper stages."""
    replicas = _cpu_replicas(recipe)
    return math.floor(0.75 * cpus / replicas * 100) / 100 if replicas else 0.0


def cluster_problem(recipe: QualityRecipe, cpus: float, gpus: float) -> str | None:
    """What the cluster lacks for the classifier actors and their helper stages, as one line."""
    need = sum(c.replicas * c.num_gpus for c in recipe.transformers if c.device == "gpu")
    if gpus < need:
        return (f"classifiers: the transformer classifiers need {need:g} GPU(s) (replicas x num_gpus) and the "
                f"cluster has {gpus:g}: add GPU nodes, or set device: cpu on them")
    if _cpu_replicas(recipe) and _replica_cpus(recipe, cpus) < MIN_CPUS:
        return (f"ray: the cluster has {cpus:g} CPU(s), too few for {_cpu_replicas(recipe)} CPU classifier "
                f"replicas: lower their replicas or give Ray more CPUs (ray.num_cpus)")
    return None


def _helper_cpus(recipe: QualityRecipe, cpus: float) -> float:
    spare = cpus - _replica_cpus(recipe, cpus) * _cpu_replicas(recipe)
    return math.floor(max(MIN_CPUS, min(1.0, spare / HELPER_STAGES)) * 100) / 100


def _pipeline(recipe: QualityRecipe, rows: list[dict], cpus: float, last, sample: float | None = None):
    """The Ray Data pipeline over shard rows (their ``sample`` fraction only, if given), ending in ``last``."""
    import ray

    from jobs.classify.stages import Score, prepare

    raw = recipe.model_dump()
    helper, replica_cpus = _helper_cpus(recipe, cpus), _replica_cpus(recipe, cpus)
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(prepare(raw, sample), num_cpus=helper)
    for c in recipe.transformers:
        actor_cpus = helper if c.device == "gpu" else replica_cpus
        resources = {"num_gpus": c.num_gpus} if c.device == "gpu" else {}
        ds = ds.map_batches(Score, fn_constructor_kwargs={"name": c.name, "model": c.model, "device": c.device,
                                                          "dtype": c.dtype, "batch_size": c.batch_size,
                                                          "label": c.label, "threads": max(1, round(actor_cpus))},
                            batch_size=1, concurrency=c.replicas, num_cpus=actor_cpus, **resources)
    return ds.map(last, num_cpus=helper)


def calibrate(recipe: QualityRecipe, storage: Storage, paths: dict[str, str], cpus: float) -> dict | None:
    """Saved cut-points to reuse, or new ones from a sample of the calibration crawl (saved, versioned)."""
    from jobs.classify.stages import sample_scores
    from operators.quality import buckets as qb

    if recipe.buckets is None:
        return None
    folder = join(recipe.output, "_calibration")
    crawls = sorted({key.split("/")[0] for key in paths})
    crawl = recipe.buckets.calibrate_on or crawls[0]
    produced = {c.name: c.model for c in recipe.classifiers}
    models = {name: produced.get(name, "input column") for name in recipe.buckets.classifiers}
    if not recipe.buckets.recalibrate:
        saved = qb.load_latest(storage, folder, crawl, models)
        if saved is not None:
            log.info("buckets: reusing cut-points calibrated on %s (v%d)", saved.crawl, saved.version)
            return saved.model_dump()
    rows = [{"path": p, "key": k} for k, p in sorted(paths.items()) if k.startswith(f"{crawl}/")]
    if not rows:
        raise ValueError(f"buckets.calibrate_on: no shard of crawl {crawl!r} in the input (crawls: {crawls})")
    samples = list(_pipeline(recipe, rows, cpus, sample_scores(recipe.model_dump()),
                             recipe.buckets.sample_fraction).iter_rows())
    tokens = np.concatenate([np.frombuffer(s["tokens"], np.int64) for s in samples])
    cuts = {}
    for name, model in models.items():
        scores = np.concatenate([np.frombuffer(s[name], np.float32) for s in samples])
        cuts[name] = qb.ClassifierCuts(column=f"{name}_score", model=model, cut_points=qb.cut_points(scores, tokens))
    calibration = qb.save(storage, folder, qb.Calibration(
        crawl=crawl, sample_fraction=recipe.buckets.sample_fraction, documents=len(tokens),
        tokens=int(tokens.sum()), classifiers=cuts))
    log.info("buckets: calibrated on %d sampled documents of %s", calibration.documents, crawl)
    return calibration.model_dump()


def calibration_ref(calibration: dict | None) -> str | None:
    return f"{calibration['crawl']}.v{calibration['version']}" if calibration else None


def _stale(storage: Storage, ledger: str, done: list[str], calibration: dict | None) -> list[str]:
    """Finished shards whose buckets came from other cut-points than ``calibration`` (so are redone)."""
    ref = calibration_ref(calibration)
    stale = [k for k, entry in finished(storage, ledger, done).items() if entry.get("calibration") != ref]
    if stale:
        log.info("%d finished shard(s) were bucketed with other cut-points than %s: redone", len(stale), ref)
    return stale


def run(recipe: QualityRecipe) -> dict:
    """Run the job; return its stats. Raises RuntimeError, after writing the stats, if shards were left unfinished."""
    check(recipe)
    check_parquet_input(recipe)  # before anything is written: the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        if recipe.rating is not None:
            from jobs.classify.rate import run as rate

            return rate(recipe, storage)
        return _score(recipe, storage)


def _score(recipe: QualityRecipe, storage: Storage) -> dict:
    """The classifiers' run, once this process holds the output."""
    from jobs.common.shrink import replanning

    started = time.time()
    paths, todo, ledger = plan(recipe, storage)
    failed, retried, session, calibrated = [], [], None, {}
    if todo or (recipe.buckets and recipe.buckets.recalibrate):
        try:
            session = start_ray(recipe.ray)
            replanning(lambda keys: _score_todo(recipe, storage, paths, list(keys), ledger, calibrated), todo,
                       lambda keys: _unfinished(storage, ledger, keys), retried, log)
        except Exception as err:  # noqa: BLE001 - reported with the shards it left unfinished, then raised
            reason = failure(err, recipe.ray, None, session, started)
            done = recorded(storage, ledger)
            failed = [{"shard": k, "error": reason} for k in todo if k not in done]
            log.error("stopped with %d shard(s) unfinished: %s", len(failed), reason)
    stats = summarize(recipe, storage, finished(storage, ledger, sorted(paths)))
    stats.update(wall_seconds=round(time.time() - started, 2), retried=retried, failed=failed)
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) not finished: {failed[0]['error']}")
    return stats


def _unfinished(storage: Storage, ledger: str, keys) -> list[str]:
    """``keys`` without ledger entries (one listing)."""
    done = recorded(storage, ledger)
    return [k for k in keys if k not in done]


def _score_todo(recipe: QualityRecipe, storage: Storage, paths: dict[str, str], todo: list[str], ledger: str,
                calibrated: dict) -> None:
    """Calibrate (once: the cut-points are kept in ``calibrated`` across re-plans) and score ``todo`` (plus
    shards bucketed with stale cut-points), sized for the cluster as it is now; raises
    :class:`~jobs.common.shrink.ClusterShrank` when it loses CPUs meanwhile."""
    from jobs.classify.stages import write
    from jobs.common.shrink import watching

    cpus = wait_for(recipe.ray, lambda c, g: cluster_problem(recipe, c, g), [{"CPU": 1}])
    with watching(cpus):
        if "cuts" not in calibrated:
            calibrated["cuts"] = calibrate(recipe, storage, paths, cpus)
        calibration = calibrated["cuts"]
        todo = todo + _stale(storage, ledger, [k for k in sorted(paths) if k not in todo], calibration)
        rows = [{"path": paths[k], "key": k} for k in todo]
        if rows:
            progress = Progress("classify", len(rows))
            for row in _pipeline(recipe, rows, cpus, write(recipe.model_dump(), calibration)).iter_rows():
                entry = json.loads(row["entry"])
                log.info("shard %s written", entry["shard"])
                progress.shard_done(entry["summary"].get("docs", 0))


def summarize(recipe: QualityRecipe, storage: Storage, done: dict[str, dict]) -> dict:
    """``_stats.json``: the finished shards' ledger entries' summaries added up, bucket token shares, drift per
    crawl."""
    from operators.quality.buckets import LABELS
    from operators.quality.summary import add, drift_from_counts, label_shares, shares

    total: dict = {}
    by_crawl: dict[str, dict] = {}
    for entry in done.values():
        add(total, entry["summary"])
        by_crawl[entry["crawl"]] = add(by_crawl.get(entry["crawl"], {}), entry["summary"])
    stats = {"shards": len(done), "documents": total.get("docs", 0), "tokens": total.get("tokens", 0),
             "cache_hits": total.get("cache_hits", {}), "histograms": total.get("histograms", {})}
    if "bucket_tokens" in total:
        stats["bucket_token_shares"] = shares(total["bucket_tokens"])
        stats["label_token_shares"] = label_shares(total["bucket_tokens"], LABELS.__getitem__)
        stats["drift"] = {crawl: {name: drift_from_counts(counts) for name, counts in
                                  part["classifier_bucket_tokens"].items()} for crawl, part in sorted(by_crawl.items())}
    return stats


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.classify", QualityRecipe, run, ("shards", "documents", "wall_seconds"),
                    argv)
