"""The decontamination recipe (``jobs/recipes/decontaminate.yaml``): evaluation sets, n-grams, what a match removes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jobs.common.recipe import Compression, RayCluster, StorageConfig, job_field
from operators.decontam.evals import FORMATS
from operators.params import Strict

DEFAULT_NGRAM = {"nemo": 13, "datatrove": 12}  # NeMo Curator's and the GPT-3 paper's 13; datatrove's 12


class EvalSet(Strict):
    """One benchmark: a JSONL or Parquet file of its rows, and the fields whose text is indexed."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="the benchmark, as _rejected/ names it")
    path: str = Field(description="local path or s3:// URI of a .jsonl or .parquet file")
    fields: list[str] = Field(min_length=1, description="text fields of a row, joined in this order (question, answer)")

    @field_validator("path")
    @classmethod
    def _format(cls, path: str) -> str:
        if not path.endswith(FORMATS):
            raise ValueError(f"{path}: an evaluation file is {' or '.join(FORMATS)}")
        return path


class DecontamRecipe(Strict):
    job: Literal["decontaminate"] = job_field("decontaminate")
    name: str = "decontaminate"
    input: str
    output: str
    evals: list[EvalSet] = Field(min_length=1)
    normalisation: Literal["nemo", "datatrove"] = "nemo"
    ngram: int | None = Field(None, ge=1, description="words per n-gram; default 13 (nemo), 12 (datatrove)")
    min_words: int = Field(8, ge=1, description="evaluation texts shorter than ngram but this long are indexed whole")
    mode: Literal["document", "spans"] = "document"
    span_chars: int = Field(200, ge=0, description="spans mode: characters cut on each side of a match")
    max_splits: int = Field(10, ge=1, description="spans mode: a document left in more pieces is removed whole")
    max_doc_hits: int = Field(10, ge=1, description="an n-gram in more documents is boilerplate: reported, ignored")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray: RayCluster = Field(default_factory=RayCluster)
    compression: Compression = "zstd"

    @model_validator(mode="after")
    def _consistent(self):
        names = [e.name for e in self.evals]
        if len(set(names)) != len(names):
            raise ValueError(f"evals: names must be distinct, got {names}")
        if self.ngram is None:
            self.ngram = DEFAULT_NGRAM[self.normalisation]
        if self.min_words > self.ngram:
            raise ValueError(f"min_words: {self.min_words} is more than ngram ({self.ngram})")
        return self
