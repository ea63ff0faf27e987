"""The quality-scoring recipe (``jobs/recipes/quality.yaml``): classifiers, buckets, cache, rating."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from jobs.common.llm_cluster import LLMRayConfig
from jobs.common.recipe import Compression, StorageConfig, job_field
from operators.llm.engine import LLMConfig
from operators.params import Strict

NAME = r"^[a-z][a-z0-9_]*$"


class TransformerClassifier(Strict):
    """A sequence-classification model on Ray Data actors (GPU, or CPU with ``device: cpu``)."""

    kind: Literal["transformer"]
    name: str = Field(pattern=NAME, description="columns <name>_score and <name>_int_score")
    model: str = Field(description="local folder, or hub id (fetched by transformers)")
    device: Literal["gpu", "cpu"] = "gpu"
    replicas: int = Field(1, ge=1)
    num_gpus: float = Field(1.0, gt=0, description="GPUs per replica (fractions share a GPU)")
    batch_size: int = Field(256, ge=1, description="documents per forward pass (length-sorted)")
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    max_length: int = Field(512, ge=8, description="tokens per document; longer ones are truncated")
    label: str | None = Field(None, description="score = p(label) for a classification head")
    range: tuple[float, float] = Field((0.0, 5.0), description="of the score histogram in _stats.json")


class FastTextClassifier(Strict):
    """A fastText binary classifier (DCLM's by default), on the CPU workers that write the shards."""

    kind: Literal["fasttext"]
    name: str = Field(pattern=NAME, description="column <name>_score")
    model: str = Field(description="local path, s3:// URI, or hub id")
    filename: str | None = Field(None, description="the model file in a hub repository")
    label: str = "__label__hq"
    range: tuple[float, float] = (0.0, 1.0)


Classifier = Annotated[TransformerClassifier | FastTextClassifier, Field(discriminator="kind")]


class BucketConfig(Strict):
    """Nemotron-CC's ensemble: per-classifier percentile buckets 0-19, the maximum taken."""

    classifiers: list[str] = Field(min_length=1, description="names whose <name>_score columns are bucketed")
    sample_fraction: float = Field(0.01, gt=0, le=1, description="of documents scored to calibrate")
    recalibrate: bool = Field(False, description="calibrate again even if saved cut-points exist")
    calibrate_on: str | None = Field(None, description="crawl to calibrate on; default: the first of the input")


class CacheConfig(Strict):
    enabled: bool = False
    root: str | None = Field(None, description="default: <output>/_cache; share it across runs to reuse scores")


class RatingConfig(Strict):
    """LLM rating through the generation engine (``operators/llm/rating.py``)."""

    prompt: str = Field("fineweb_edu_rating", description="a rating prompt: fineweb_edu_rating, dataman_rating")
    llm: LLMConfig
    tokenizer: str | None = Field(None, description="for truncating documents; default: the model's")


class QualityRecipe(Strict):
    job: Literal["classify"] = job_field("classify")
    name: str
    input: str
    output: str
    storage: StorageConfig = Field(default_factory=StorageConfig)
    classifiers: list[Classifier] = Field(default_factory=list)
    buckets: BucketConfig | None = None
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rating: RatingConfig | None = None
    ray: LLMRayConfig = Field(default_factory=LLMRayConfig)
    compression: Compression = "zstd"

    @model_validator(mode="after")
    def _consistent(self):
        names = [c.name for c in self.classifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"classifiers: names must be distinct, got {names}")
        if not self.classifiers and self.rating is None:
            raise ValueError("classifiers: give classifiers, or a rating block")
        if self.classifiers and self.rating is not None:
            raise ValueError("rating: a recipe either runs classifiers or an LLM rating; split it in two recipes")
        return self

    @property
    def transformers(self) -> list[TransformerClassifier]:
        return [c for c in self.classifiers if c.kind == "transformer"]
