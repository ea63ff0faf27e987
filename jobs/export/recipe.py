"""The export recipe (``jobs/recipes/export.yaml``): input, tokenizer, format, seed, shard size, weights,
curriculum."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jobs.common.recipe import RayCluster, StorageConfig, job_field
from operators.export.kinds import KINDS
from operators.params import Strict

KIND_NAMES = {"real", *KINDS.values()}


class FinalPhase(Strict):
    """The last phase: the named kinds and quality labels again, upsampled to ``fraction`` of all tokens."""

    kinds: list[str] = Field(default_factory=list, description="source kinds: real, rephrased, thought, ...")
    labels: list[str] = Field(default_factory=list, description="values of the curriculum column, e.g. High")
    fraction: float = Field(0.15, gt=0, lt=1, description="of all tokens, in the final phase")
    max_repeats: int = Field(4, ge=1, le=64, description="copies of a document the final phase may hold at most")

    @model_validator(mode="after")
    def _named(self):
        if not self.kinds and not self.labels:
            raise ValueError("curriculum.final: name kinds or labels to upsample")
        return self


class Curriculum(Strict):
    """Shards in phases instead of one shuffle: quality ascending, then the final phase."""

    order: Literal["quality_ascending"] = "quality_ascending"
    column: Literal["quality_label", "quality_bucket"] = "quality_label"
    final: FinalPhase | None = None


class ExportRecipe(Strict):
    job: Literal["export"] = job_field("export")
    input: str = Field(description="a mixture run folder (with mixture.json) or any folder of Parquet documents")
    output: str
    tokenizer: str = Field(description="local folder or hub id of a fast tokenizer")
    format: Literal["megatron", "datatrove"] = "megatron"
    eos: bool | str = Field(True, description="append the tokenizer's EOS (true), nothing (false), or this token")
    seed: int = Field(0, ge=0)
    shard_tokens: int = Field(1 << 30, ge=1, description="tokens per output shard, about")
    weights: dict[str, float] = Field(default_factory=dict, description="copies per source kind (default 1.0)")
    fast_bpe: bool = Field(True, description="run a byte-level BPE by tiktoken's core where it gives the same ids")
    batch_size: int = Field(1024, ge=1, description="documents per tokenizer call")
    curriculum: Curriculum | None = None
    keep_work: bool = Field(False, description="keep _work/ (the token caches) after the export is written")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray: RayCluster = Field(default_factory=RayCluster)

    @model_validator(mode="after")
    def _consistent(self):
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"weights: must be >= 0, got {bad}")
        named = {"weights": list(self.weights)}
        if self.curriculum and self.curriculum.final:
            named["curriculum.final.kinds"] = self.curriculum.final.kinds
        for key, kinds in named.items():
            unknown = sorted(set(kinds) - KIND_NAMES)
            if unknown:
                raise ValueError(f"{key}: unknown kind(s) {unknown}; the kinds are {sorted(KIND_NAMES)}")
        return self
