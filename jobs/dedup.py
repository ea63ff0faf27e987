"""Dedup job: global URL, exact and MinHash-LSH fuzzy deduplication of a run's shards on PySpark.

    python -m jobs.dedup --config jobs/recipes/dedup.yaml --set input=<run>/filter --set output=<run>/dedup

Writes ``<output>/<crawl>/<shard>.parquet`` (kept documents, one file per input shard),
``<output>/duplicates/`` (``id, cluster_id, kept_id, method``: every removal, to audit or undo)
and ``<output>/_stats.json`` last. Re-running with the same input and config rewrites the same
files with the same content, so a killed run is simply run again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import pyarrow.parquet as pq
from pydantic import Field

from jobs.cli import job_main
from jobs.config import StorageConfig
from operators.io.layout import shard_of
from operators.io.storage import Storage, join
from operators.params import Strict

log = logging.getLogger("cc_refinery.dedup")


class UrlConfig(Strict):
    enabled: bool = False


class ExactConfig(Strict):
    enabled: bool = True
    nfc: bool = True
    fold_whitespace: bool = True
    lowercase: bool = True
    hash_bits: int = Field(64, description="64 or 128", json_schema_extra={"enum": [64, 128]})

    def model_post_init(self, _):
        if self.hash_bits not in (64, 128):
            raise ValueError("exact.hash_bits must be 64 or 128")


class MinHashConfig(Strict):
    """FineWeb's defaults: word 5-grams, 14 bands x 8 rows (Jaccard ~0.75 at 50% detection)."""

    enabled: bool = True
    ngram: int = Field(5, ge=1)
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)
    seed: int = 1
    verify: bool = True
    threshold: float = Field(0.8, ge=0, le=1, description="true-Jaccard bar when verify is on")
    max_pairs_bucket: int = Field(32, ge=2, description="larger buckets give star edges, not all pairs")


class SparkConfig(Strict):
    master: str = "local[*]"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(64, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)


class DedupRecipe(Strict):
    name: str
    input: str
    output: str
    storage: StorageConfig = Field(default_factory=StorageConfig)
    url: UrlConfig = Field(default_factory=UrlConfig)
    exact: ExactConfig = Field(default_factory=ExactConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    compression: str = "zstd"


def spark_session(cfg: SparkConfig):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(cfg.master).appName("cc-refinery-dedup")
               .config("spark.driver.memory", cfg.driver_memory)
               .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
               .config("spark.sql.adaptive.enabled", "true")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               # no broadcast joins: a broadcast gathers one side on the driver, which at scale
               # (bucket members, edges) is exactly what must stay distributed
               .config("spark.sql.autoBroadcastJoinThreshold", "-1")
               .config("spark.sql.adaptive.autoBroadcastJoinThreshold", "-1"))
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def run(recipe: DedupRecipe, spark=None) -> dict:
    """Run the dedup job; return its stats."""
    from pyspark.sql import functions as F

    from operators.dedup import spark_dedup as sd

    started = time.time()
    storage = Storage(**recipe.storage.model_dump())
    files = storage.walk(recipe.input, ".parquet")
    if not files:
        raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
    fs, first = storage.filesystem(files[0])
    schema = pq.read_schema(first, filesystem=fs)
    if storage.exists(join(recipe.output, "_stats.json")):  # the run is complete only once it is rewritten
        storage.delete(join(recipe.output, "_stats.json"))
    for part in storage.listdir(join(recipe.output, "duplicates")):
        storage.delete(join(recipe.output, "duplicates", part))
    spark = spark or spark_session(recipe.spark)
    add, fields = sd.signature_columns(recipe.exact.model_dump(), recipe.minhash.model_dump())
    meta = (sd.read_shards(spark, storage, files, schema, add, fields)
            .select("id", "url", "date", "_exact", "_bands").persist())
    docs = sd.read_shards(spark, storage, files, schema)

    methods = []
    if recipe.url.enabled:
        methods.append(sd.url_duplicates)
    if recipe.exact.enabled:
        methods.append(sd.exact_duplicates)
    if recipe.minhash.enabled:
        methods.append(lambda pool: sd.fuzzy_duplicates(pool, fuzzy_edges(pool)))

    def fuzzy_edges(pool):
        edges = sd.candidate_edges(pool, recipe.minhash.max_pairs_bucket)
        if recipe.minhash.verify:
            edges = sd.verified_edges(edges, docs.select("id", "text"), recipe.minhash.ngram,
                                      recipe.minhash.threshold)
        return edges.persist()

    dups = spark.createDataFrame([], sd.DUPLICATES_SCHEMA)
    for method in methods:  # each method sees only what the earlier ones kept
        dups = dups.union(method(meta.join(dups.select("id"), "id", "left_anti")).localCheckpoint())
    dups = dups.persist()

    kept = docs.join(dups.select("id"), "id", "left_anti")
    written = sd.write_shards(kept, storage, recipe.output, schema, recipe.compression)
    done_shards = {(r["crawl"], r["shard"]) for r in written}
    for path in files:  # a shard whose documents were all duplicates still gets its (empty) file
        crawl, shard = shard_of(path)
        if (crawl, shard) not in done_shards:
            target = join(recipe.output, crawl, f"{shard}.parquet")
            storage.write_atomic(target, lambda out: pq.write_table(schema.empty_table(), out))
    removed = sd.write_table_parts(dups.orderBy("id"), storage, join(recipe.output, "duplicates"))
    by_method = {r["method"]: r["count"] for r in dups.groupBy("method").count().collect()}
    clusters = {r["method"]: r["n"] for r in
                dups.groupBy("method").agg(F.countDistinct("cluster_id").alias("n")).collect()}
    total = meta.count()
    stats = {
        "input": total,
        "kept": sum(r["rows"] for r in written),
        "removed": removed,
        "url_duplicates": by_method.get("url", 0),
        "exact_duplicates": by_method.get("exact", 0),
        "fuzzy_duplicates": by_method.get("fuzzy", 0),
        "clusters": clusters,
        "largest_cluster": sd.largest_cluster(dups),
        "shards": len(files),
        "config": recipe.model_dump(include={"url", "exact", "minhash"}),
        "seconds": round(time.time() - started, 2),
    }
    storage.write_text(join(recipe.output, "_stats.json"), json.dumps(stats, indent=1))
    meta.unpersist()
    dups.unpersist()
    return stats


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.dedup", DedupRecipe, run, ("input", "kept", "removed", "seconds"), argv)


if __name__ == "__main__":
    sys.exit(main())
