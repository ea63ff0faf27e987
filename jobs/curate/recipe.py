"""The curation recipe: input, storage, output, Ray and the operator ``pipeline`` (checked operator by operator)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from jobs.common.recipe import Compression, RayCluster, StorageConfig, job_field, load_model
from jobs.common.recipe_errors import nearest, problem
from operators.params import Strict
from operators.registry import MODULES, operator_class


class InputConfig(Strict):
    paths: list[str] = Field(default_factory=list, description="paths, globs or s3:// URIs")
    crawl: str | None = Field(None, description="a crawl id like CC-MAIN-2024-22")
    format: Literal["warc", "wet"] = Field("warc", description="which listing a crawl id resolves to")
    limit: int | None = Field(None, ge=1)
    shards: str | None = Field(None, pattern=r"^\d*:\d*$",
                               description='start:stop slice of the list (quote it in YAML: "2:5")')
    part_mb: float | None = Field(None, gt=0, description="split gzipped shards into parts of about this many MB; "
                                  "default: only when there are under 4 shards per worker (jobs/curate/shard_plan.py)")

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path(cls, value):
        """A single string is one path (spaces included); several are given as a YAML list."""
        return [value] if isinstance(value, str) else value


class OutputConfig(Strict):
    root: str = "./output"
    run: str | None = Field(None, description="default: the recipe name")
    rejected: bool = True
    compression: Compression = "zstd"
    by_language: bool = Field(False, description="kept documents in one folder per language: "
                              "<run>/filter/<language>/<crawl>/<shard>.parquet (needs the language step)")


class RayConfig(RayCluster):
    workers: int | None = Field(None, ge=1, description="shards processed at once; default: all CPUs")
    batch_size: int = Field(256, ge=1, description="documents per Arrow batch")


class Recipe(Strict):
    job: Literal["curate"] = job_field("curate")
    name: str
    mode: Literal["filter", "annotate"] = "filter"
    input: InputConfig = Field(default_factory=InputConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    pipeline: list[dict[str, dict[str, Any] | None]]

    @field_validator("pipeline")
    @classmethod
    def _operators(cls, steps):
        checked = []
        for i, step in enumerate(steps):
            if len(step) != 1:
                raise ValueError(f"pipeline[{i}] must be one operator name mapped to its parameters")
            (name, params), = step.items()
            if name in (seen := [next(iter(s)) for s in checked]):
                raise ValueError(f"pipeline[{i}]: {name!r} is already step {seen.index(name)}; a step runs once "
                                 "(its counts, and --set pipeline.<name>, are by name)")
            if name not in MODULES:
                raise ValueError(f"pipeline[{i}]: unknown operator {name!r}; "
                                 f"{nearest(name, MODULES) or 'known: ' + ', '.join(MODULES)}")
            cls = operator_class(name).Params
            try:
                params = cls(**(params or {})).model_dump()
            except ValidationError as err:
                raise ValueError("; ".join(problem(e, cls, f"pipeline.{name}") for e in err.errors())) from None
            checked.append({name: params})
        if "extract" not in [next(iter(s)) for s in checked]:
            raise ValueError("pipeline: an 'extract' step is required (it also passes WET text through)")
        names = [next(iter(s)) for s in checked]
        for i, (name, params) in enumerate(next(iter(s.items())) for s in checked):
            if params.get("language_configs") and operator_class(name).adapted and "language" not in names[:i]:
                raise ValueError(f"pipeline.{name}.language_configs: needs a 'language' step before {name}")
        return checked

    def model_post_init(self, _):
        if self.output.by_language and "language" not in dict(self.steps):
            raise ValueError("output.by_language: needs a 'language' step in the pipeline")

    @property
    def steps(self) -> list[tuple[str, dict]]:
        return [next(iter(step.items())) for step in self.pipeline]

    def operator_params(self, name: str) -> dict:
        return dict(self.steps)[name]


def load_recipe(path: str, overrides: list[str] = ()) -> Recipe:
    """Read, override and validate a curation recipe; raise ValueError naming the bad key."""
    return load_model(Recipe, path, overrides)
