"""Dedup job: global URL, exact and MinHash-LSH fuzzy deduplication of a run's shards on PySpark.

    python -m jobs.dedup --config jobs/recipes/dedup.yaml --set input=<run>/filter --set output=<run>/dedup

Writes ``<output>/<crawl>/<shard>.parquet`` (kept documents with ``minhash_cluster_size``, the documents each
stands for, itself included; one file per input shard, in its language folder when the input has one; shard
files of an earlier run whose shard is gone are deleted), ``<output>/_duplicates/``
(``id, shard, cluster_id, kept_id, kept_shard, method``: every removal, to audit or undo) and
``<output>/_stats.json`` last. Re-running with the same input and config rewrites the same files
with the same content, so a killed run is simply run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray import is_initialized as ray_initialized

from jobs.common.checks import check_parquet_input, writable
from jobs.common.cli import job_main, start_ray
from jobs.dedup.recipe import DedupRecipe, SparkConfig
from jobs.dedup.rehydrate import COLUMN, rehydrate
from jobs.dedup.spark_on_ray import ray_nodes, spark_on_ray
from operators.io.layout import shard_of
from operators.io.run_lock import RunLock
from operators.io.storage import Storage, is_s3, join

log = logging.getLogger("cc_refinery.dedup")

SPARK_LOG4J = Path(__file__).with_name("spark-log4j2.properties")


def spark_session(cfg: SparkConfig, master: str | None = None, conf: dict[str, str] | None = None):
    """A Spark session with the job's settings, then ``conf`` and ``cfg.conf`` over them; driver JVM options
    given there are added after the job's log configuration, not in its place."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark 4.3 warns on every pandas 3 import although the job uses no pandas API; py4j logs each closed socket
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    extra = {**(conf or {}), **cfg.conf}
    java_options = f"-Dlog4j.configurationFile={SPARK_LOG4J} {extra.pop('spark.driver.extraJavaOptions', '')}"
    builder = (SparkSession.builder.master(master or cfg.master).appName("cc-refinery-dedup")
               .config("spark.driver.extraJavaOptions", java_options.strip())
               .config("spark.driver.memory", cfg.driver_memory)
               .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
               .config("spark.sql.adaptive.enabled", "true")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               # no broadcast joins: a broadcast gathers one side on the driver, which at scale
               # (bucket members, edges) is exactly what must stay distributed
               .config("spark.sql.autoBroadcastJoinThreshold", "-1")
               .config("spark.sql.adaptive.autoBroadcastJoinThreshold", "-1"))
    for key, value in extra.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (local paths resolved, ``s3://`` URIs compared as keys)."""
    if is_s3(path) != is_s3(folder):
        return False
    if not is_s3(path):
        path, folder = os.path.realpath(path), os.path.realpath(folder)
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _sweep(storage: Storage, output: str, keep: set[tuple[str, str]]) -> None:
    """Delete ``<output>/[<language>/]<crawl>/*.parquet*`` files (staging leftovers too) but those of the shards
    in ``keep`` (``(crawl, shard)``, the crawl ``<language>/<crawl>`` in language folders)."""
    names = {f"{crawl}/{shard}.parquet" for crawl, shard in keep}
    fs, base = storage.filesystem(output)
    base = base.rstrip("/")
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        relative = info.path[len(base):].strip("/")
        parts = relative.split("/")
        if (info.type == pafs.FileType.File and len(parts) in (2, 3) and not parts[0].startswith("_")
                and ".parquet" in parts[-1] and relative not in names):
            fs.delete_file(info.path)


def _on_ray(recipe: DedupRecipe) -> bool:
    """Whether Spark runs standalone on the Ray cluster (``ray``, or ``auto`` with more than one Ray node)."""
    if recipe.spark.master not in ("ray", "auto"):
        return False
    if recipe.spark.master == "auto" and not (ray_initialized() or recipe.ray.address or os.environ.get("RAY_ADDRESS")):
        return False
    start_ray(recipe.ray)
    return recipe.spark.master == "ray" or len(ray_nodes()) > 1


@contextlib.contextmanager
def _spark(recipe: DedupRecipe):
    """The session for this run: local (kept for the process), or standalone on Ray (stopped after)."""
    from pyspark.sql import SparkSession

    if not _on_ray(recipe):
        yield spark_session(recipe.spark, "local[*]" if recipe.spark.master == "auto" else None)
        return
    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()
    with spark_on_ray(recipe.spark.ray_memory_fraction, recipe.spark.start_timeout_s) as cluster:
        log.info("dedup: Spark standalone on Ray at %s", cluster.master)
        spark = spark_session(recipe.spark, cluster.master, cluster.conf)
        cluster.watch(spark.sparkContext.cancelAllJobs)
        try:
            yield spark
        except Exception as err:
            if cluster.lost:
                raise RuntimeError(cluster.lost) from err
            if "CHECKPOINT_RDD_BLOCK_ID_NOT_FOUND" in str(err):  # localCheckpoint's blocks live in executors only
                raise RuntimeError("spark.master=ray: a Spark worker was lost (its Ray node?) with duplicates it had "
                                   "computed, which Spark cannot recompute; the output has no _stats.json yet: run "
                                   "the job again") from None
            raise
        finally:
            spark.stop()


def check(recipe: DedupRecipe) -> None:
    """Start-up checks: input and output apart, ``output`` writable."""
    if _within(recipe.output, recipe.input) or _within(recipe.input, recipe.output):
        raise ValueError(f"output: {recipe.output} and input {recipe.input} must not lie inside one another")
    writable(Storage(**recipe.storage.model_dump()), recipe.output, "output")


def run(recipe: DedupRecipe, spark=None) -> dict:
    """Run the dedup job; return its stats (on ``spark`` if given, else on the session ``spark.master`` says).

    Input files that cannot be deduped (unreadable, or without ``id``/``text``) are quarantined:
    the rest is deduped and written with the stats, then RuntimeError names them.
    """
    started = time.time()
    check(recipe)
    check_parquet_input(recipe)  # before anything is written: the run lock makes the output folder
    storage = Storage(**recipe.storage.model_dump())
    with RunLock(storage, recipe.output):
        files = _prepare(recipe, storage)  # bad settings and an empty input fail before Spark starts
        if spark is not None:
            return _run(recipe, spark, storage, files, started)
        with _spark(recipe) as session:
            return _run(recipe, session, storage, files, started)


def _prepare(recipe: DedupRecipe, storage: Storage) -> list[str]:
    """Clear what a killed or earlier run left in the output; return the input files."""
    storage.sweep_staging(recipe.output)  # what a killed run was writing
    files = storage.walk(recipe.input, ".parquet")
    if not files:
        raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
    if storage.exists(join(recipe.output, "_stats.json")):  # the run is complete only once it is rewritten
        storage.delete(join(recipe.output, "_stats.json"))
    for part in storage.listdir(join(recipe.output, "_duplicates")):
        storage.delete(join(recipe.output, "_duplicates", part))
    return files


def _run(recipe: DedupRecipe, spark, storage: Storage, files: list[str], started: float) -> dict:
    """Dedup ``files`` on ``spark``; return the stats."""
    from pyspark.sql import functions as F

    from operators.dedup import spark_dedup as sd

    per_language = recipe.minhash.enabled and recipe.minhash.per_language
    problems = sd.check_files(spark, storage, files, sd.NEEDED_COLUMNS + (("language",) if per_language else ()))
    quarantined = [{"file": f, "reason": problems[f]} for f in files if f in problems]
    good = [(i, f) for i, f in enumerate(files) if f not in problems]
    if not good:
        raise RuntimeError(f"input: no usable .parquet files under {recipe.input}: {_listed(quarantined)}")
    fs, first = storage.filesystem(good[0][1])
    schema = pq.read_schema(first, filesystem=fs)
    add, fields = sd.signature_columns(recipe.exact.model_dump(), recipe.minhash.model_dump())
    def columns(*names):
        return pa.schema([f for f in schema if f.name in names])

    meta = (sd.read_shards(spark, storage, good, columns("id", "url", "date", "text", "language"), add, fields)
            .select("_row", "id", "url", "date", F.concat_ws("/", "_crawl", "_shard").alias("shard"),
                    "_blank", "_exact", "_bands").persist())
    texts = sd.read_shards(spark, storage, good, columns("text", *(["language"] if per_language else [])))
    docs = sd.read_shards(spark, storage, good, schema)
    pool = meta.where(~F.col("_blank"))  # null or whitespace-only texts are passed through, never deduped

    methods = []
    if recipe.url.enabled:
        methods.append(sd.url_duplicates)
    if recipe.exact.enabled:
        methods.append(sd.exact_duplicates)
    if recipe.minhash.enabled:
        methods.append(lambda rows: sd.fuzzy_duplicates(rows, fuzzy_edges(rows)))

    def fuzzy_edges(rows):
        edges = sd.candidate_edges(rows, recipe.minhash.max_pairs_bucket)
        if recipe.minhash.verify:
            edges = sd.verified_edges(edges, texts, recipe.minhash.ngram, recipe.minhash.threshold, per_language)
        return edges.persist()

    dups = spark.createDataFrame([], sd.DUPLICATES_SCHEMA)
    for method in methods:  # each method sees only what the earlier ones kept
        dups = dups.union(method(pool.join(dups.select("_row"), "_row", "left_anti")).localCheckpoint())
    dups = dups.persist()

    kept = (docs.drop("minhash_cluster_size")
            .join(dups.select("_row"), "_row", "left_anti")
            .join(sd.cluster_sizes(dups), "_row", "left").fillna(1, ["minhash_cluster_size"]))
    added = ["minhash_cluster_size"] + ([COLUMN] if recipe.rehydration.enabled else [])
    if recipe.rehydration.enabled:
        kept, rehydrated = rehydrate(spark, kept.drop(COLUMN),
                                     recipe.rehydration.rule, recipe.rehydration.max_reps)
    schema = pa.schema([f for f in schema if f.name not in added] + [pa.field(c, pa.int64()) for c in added])
    written = sd.write_shards(kept, storage, recipe.output, schema, recipe.compression)
    shards = {shard_of(path) for _, path in good}
    for crawl, shard in shards - {(r["crawl"], r["shard"]) for r in written}:  # all duplicates: an empty file
        target = join(recipe.output, crawl, f"{shard}.parquet")
        storage.write_atomic(target, lambda out: pq.write_table(schema.empty_table(), out))
    _sweep(storage, recipe.output, shards)
    cluster = F.format_string("%s#%d", "kept_shard", F.col("_kept").bitwiseAND(0xFFFFFFFF)).alias("cluster_id")
    table = dups.orderBy("_row").select("id", "shard", cluster, "kept_id", "kept_shard", "method")
    removed = sd.write_table_parts(table, storage, join(recipe.output, "_duplicates"))
    by_method = sd.method_counts(dups)
    total, blank = meta.agg(F.count("*"), F.count(F.when(F.col("_blank"), 1))).first()
    stats = {
        "input": total,
        "kept": sum(r["rows"] for r in written),
        "removed": removed,
        "empty_text": blank,
        "url_duplicates": by_method.get("url", (0,))[0],
        "exact_duplicates": by_method.get("exact", (0,))[0],
        "fuzzy_duplicates": by_method.get("fuzzy", (0,))[0],
        "clusters": {method: counts[1] for method, counts in by_method.items()},
        "largest_cluster": max((counts[2] for counts in by_method.values()), default=0),
        "shards": len(good),
        "quarantined": quarantined,
        "config": recipe.model_dump(include={"url", "exact", "minhash", "rehydration"}),
        **({"rehydration": rehydrated} if recipe.rehydration.enabled else {}),
        "seconds": round(time.time() - started, 2),
    }
    meta.unpersist()
    dups.unpersist()
    if stats["input"] != stats["kept"] + stats["removed"]:
        raise RuntimeError(f"dedup lost count: input {stats['input']} != kept {stats['kept']} "
                           f"+ removed {stats['removed']}; {recipe.output} is incomplete (no _stats.json)")
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    if quarantined:
        raise RuntimeError(f"input: {len(quarantined)} unusable file(s) quarantined (the rest was deduped, "
                           f"see {join(recipe.output, '_stats.json')}): {_listed(quarantined)}")
    return stats


def _listed(quarantined: list[dict]) -> str:
    return "; ".join(f"{q['file']} ({q['reason']})" for q in quarantined)


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.dedup", DedupRecipe, run, ("input", "kept", "removed", "seconds"), argv)
