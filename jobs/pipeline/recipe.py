"""The mixture recipe: the curation input, and each stage's own recipe with its ``set`` overrides."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.common.recipe import RayCluster, StorageConfig, job_field
from operators.params import Strict


class Stage(Strict):
    recipe: str
    set: list[str] = Field(default_factory=list, description="--set overrides for this stage")


class Stages(Strict):
    curate: Stage
    dedup: Stage
    quality: Stage
    synthesize: list[Stage] = Field(default_factory=list)
    decontaminate: Stage | None = Field(None, description="benchmark decontamination of every source before the "
                                                          "manifest (the quality output and each synthesis output)")
    export: Stage | None = Field(None, description="tokenized training shards of the mixture, after mixture.json")


class MixtureRecipe(Strict):
    job: Literal["pipeline"] = job_field("pipeline")
    name: str
    root: str = "./output"
    input: list[str] = Field(description="the curation input: paths, globs or s3:// URIs")
    crawl: str | None = Field(None, description="a crawl id (CC-MAIN-2024-22): its listing is the input instead")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray: RayCluster = Field(default_factory=RayCluster)
    stages: Stages
