"""The dedup recipe: URL, exact and MinHash settings, and where Spark runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.common.recipe import Compression, RayCluster, StorageConfig, job_field
from operators.params import Strict


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
    per_language: bool = Field(False, description="FineWeb2: shingles of the document language's words "
                               "(its word tokenizer), candidates only within one language (needs `language`)")


class RehydrationConfig(Strict):
    """FineWeb2's upsampling: ``rehydration_repeats`` per kept document from its cluster size and language."""

    enabled: bool = False
    rule: Literal["fineweb2", "simple"] = Field("fineweb2", description="fineweb2: per-language weights (FineWeb2's "
                                                "shipped ones, else this run's removal rates); simple: "
                                                "{1:1, 2:2, 3:3, 5:5, 100:8, 1000:1}")
    max_reps: int = Field(5, ge=3, le=10, description="the most repetitions (fineweb2 rule; shipped for 3..10)")


class SparkConfig(Strict):
    master: str = Field("auto", description="a Spark master URL; `ray`: Spark standalone started on the Ray cluster "
                        "(jobs/dedup/spark_on_ray.py); `auto`: `ray` on a multi-node Ray cluster, else local[*]")
    ray_memory_fraction: float = Field(0.7, gt=0, le=1, description="share of each Ray node's memory for Spark")
    start_timeout_s: float = Field(180, gt=0, description="`ray`: fail when the Spark workers are not up by then")
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(64, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)


class DedupRecipe(Strict):
    job: Literal["dedup"] = job_field("dedup")
    name: str
    input: str
    output: str
    storage: StorageConfig = Field(default_factory=StorageConfig)
    url: UrlConfig = Field(default_factory=UrlConfig)
    exact: ExactConfig = Field(default_factory=ExactConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    rehydration: RehydrationConfig = Field(default_factory=RehydrationConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ray: RayCluster = Field(default_factory=RayCluster)
    compression: Compression = "zstd"
