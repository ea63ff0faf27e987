"""The cost planner's settings (``jobs/recipes/plan.yaml``): document figures, throughputs, LLM rates, prices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jobs.common.recipe import StorageConfig
from operators.params import Strict


class Listing(Strict):
    sample: int = Field(64, ge=2, description="shards whose size is read with HEAD; all of them in a smaller crawl")
    threads: int = Field(16, ge=1, description="HEAD requests at once")
    requests_per_shard: float = Field(2, ge=0, description="S3/HTTP requests a job makes per shard (stat + read)")


class Documents(Strict):
    docs_per_mb: float = Field(gt=0, description="WARC response records per MB (10^6 bytes) of gzipped WARC")
    words_per_doc: float = Field(gt=0, description="whitespace words per document kept by curation")
    tokens_per_word: float = Field(gt=0, description="LLM tokens per whitespace word")
    curate_kept: float = Field(gt=0, le=1, description="share of documents the curation recipe keeps")
    dedup_kept: float = Field(gt=0, le=1, description="share of curated documents global dedup keeps")


class CpuThroughput(Strict):
    """Per-core rates, from the benchmarks; ``--bench`` replaces any of them."""

    measured: str = Field(description="where and when the figures were measured")
    curate_docs_per_core_s: float = Field(gt=0, description="read + extract + filter (make bench, all stages, 1 core)")
    dedup_words_per_core_s: float = Field(gt=0, description="the whole Spark dedup job (make bench-dedup)")
    fasttext_docs_per_core_s: float = Field(gt=0, description="a fastText quality classifier (make bench-classify)")
    transformer_docs_per_core_s: float = Field(gt=0, description="a BERT-base classifier on device: cpu")


class TokenRates(Strict):
    input_tokens_s: float = Field(gt=0, description="prompt tokens per second of one replica")
    output_tokens_s: float = Field(gt=0, description="generated tokens per second of one replica")


class ModelRates(Strict):
    name: str = Field(description="the recipe's llm.model")
    gpus: dict[str, TokenRates] = Field(description="per GPU type; a replica has the recipe's tensor_parallel_size")


class Family(Strict):
    """Answer length of a prompt family: min(answer_ratio * input chunk + answer_tokens, sampling.max_tokens)."""

    answer_ratio: float = Field(ge=0, description="generated tokens per input token")
    answer_tokens: float = Field(0, ge=0, description="generated tokens per request, beside the ratio")


class Llm(Strict):
    chat_tokens: float = Field(ge=0, description="chat-template tokens per request (role markers)")
    models: list[ModelRates]
    families: dict[str, Family]

    def rates(self, model: str, gpu: str) -> TokenRates:
        for i, entry in enumerate(self.models):
            if entry.name == model:
                if gpu not in entry.gpus:
                    raise ValueError(f"llm.models.{i}.gpus: no {gpu} figures for {model}")
                return entry.gpus[gpu]
        raise ValueError(f"llm.models: no throughput figures for {model!r}; add an entry "
                         f"(--set 'llm.models=[...]' or a copy of jobs/recipes/plan.yaml)")


class Quality(Strict):
    """The share of documents in each ``quality_bucket`` (0-19)."""

    bucket_exponent: float | None = Field(None, gt=0, description="share at or below bucket b: ((b+1)/20)^e; "
                                                                   "default: the number of bucketed classifiers")
    bucket_shares: list[float] | None = Field(None, description="20 measured shares (buckets 0-19), instead")
    classifier_docs_per_gpu_s: dict[str, float] = Field(description="BERT-base-size classifiers at 512 tokens")

    @field_validator("bucket_shares")
    @classmethod
    def _twenty(cls, shares):
        if shares is not None and (len(shares) != 20 or abs(sum(shares) - 1) > 1e-6 or min(shares) < 0):
            raise ValueError("20 non-negative shares summing to 1")
        return shares


class StageRequests(Strict):
    """S3 requests one stage makes per shard on the run's bucket (``python -m benchmarks.control_plane``)."""

    get: float = Field(0, ge=0)
    put: float = Field(0, ge=0)
    head: float = Field(0, ge=0)
    list: float = Field(0, ge=0)
    post: float = Field(0, ge=0, description="multipart uploads' start and end")

    def priced(self, prices: Prices) -> float:
        """USD per shard: PUT, POST and LIST at one price, GET and HEAD at the other (DELETE is free)."""
        return ((self.put + self.post + self.list) * prices.s3_put_per_1000
                + (self.get + self.head) * prices.s3_get_per_1000) / 1000


class Prices(Strict):
    cpu_core_hour: float = Field(ge=0)
    gpu_hour: dict[str, float] = Field(description="per GPU type")
    s3_requests_per_1000: float = Field(0, ge=0, description="reading the input (Common Crawl's bucket)")
    egress_per_gb: float = Field(0, ge=0)
    s3_put_per_1000: float = Field(0, ge=0, description="PUT, COPY, POST, LIST on the run's bucket")
    s3_get_per_1000: float = Field(0, ge=0, description="GET, HEAD on the run's bucket")


class PlanConfig(Strict):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    listing: Listing = Field(default_factory=Listing)
    documents: Documents
    cpu: CpuThroughput
    gpu: str = Field(description="GPU type the LLM and classifier stages run on")
    llm: Llm
    quality: Quality
    prices: Prices
    stage_requests: dict[Literal["curate", "dedup", "quality", "synth"], StageRequests] = Field(
        default_factory=dict, description="S3 requests per shard of each stage on the run's bucket")

    @model_validator(mode="after")
    def _priced(self):
        if self.gpu not in self.prices.gpu_hour:
            raise ValueError(f"prices.gpu_hour: no price for {self.gpu}")
        return self
