"""The mixture's start-up checks: every stage's recipe, inputs, files, resources and models, before the first runs.

A stage that would fail an hour in (classifiers that need GPUs the cluster lacks, a model that is
nowhere to be had) stops the pipeline in seconds, with one line naming the stage and the key:
``stages.quality (jobs/recipes/quality.yaml): classifiers: ... need 3 GPU(s) ... and the cluster has 0``.
Each stage still runs its own checks when it starts; these are the same checks, all of them first.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from pydantic import BaseModel

from jobs import classify, export, synthesize
from jobs.common.checks import llm_files, local_path
from operators.io.storage import is_s3

HUB_TIMEOUT_S = 10.0
CPU_ROUTE = "on a machine without GPUs run the CPU mixture (jobs/recipes/mixture-cpu.yaml, README: End-to-end mixture)"


@dataclass
class StageRecipe:
    key: str  # where the mixture names it: stages.curate, stages.synthesize.1 ...
    path: str  # its recipe file
    job: ModuleType  # the job's package (jobs.curate ...): its check and run
    recipe: BaseModel  # loaded with the overrides the pipeline runs it with

    @contextmanager
    def naming(self):
        """Re-raise a check's ValueError / FileNotFoundError / RuntimeError with the stage in front."""
        try:
            yield
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            raise type(err)(f"{self.key} ({self.path}): {err}") from None


def check_stages(ray_cluster, stages: list[StageRecipe]) -> None:
    """Every stage's files and inputs (no Ray), then what each asks of the cluster, then its hub models."""
    for stage in stages:
        with stage.naming():
            stage.job.check(stage.recipe)  # curation's checks its input too
    _resources(ray_cluster, stages)
    for stage in stages:
        with stage.naming():
            _hub_models(_hub_ids(stage.recipe))


def _resources(ray_cluster, stages: list[StageRecipe]) -> None:
    """What each GPU/CPU-holding stage asks of the cluster (unless it may wait for an autoscaler)."""
    import ray

    from jobs.common.cli import start_ray
    from operators.llm.resources import missing

    start_ray(ray_cluster)
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    for stage in stages:
        recipe, problem = stage.recipe, None
        if not isinstance(recipe, classify.QualityRecipe | synthesize.SynthRecipe) or recipe.ray.resources_wait_s > 0:
            continue
        if isinstance(recipe, classify.QualityRecipe):
            problem = classify.cluster_problem(recipe, cpus, gpus)
            if problem is None and recipe.rating is not None:
                problem = missing(recipe.rating.llm, cpus, gpus)
        elif recipe.prox or recipe.llm.engine == "vllm":
            problem = missing(recipe.llm, cpus, gpus)
        if problem:
            hint = f"; {CPU_ROUTE}" if gpus == 0 and "GPU" in problem else ""
            raise RuntimeError(f"{stage.key} ({stage.path}): {problem}{hint}")


def _hub_ids(recipe: BaseModel) -> dict[str, tuple[str, str | None]]:
    """``{key: (hub id, file)}`` of the models a stage fetches from the Hugging Face hub (not paths or s3://)."""
    names: dict[str, tuple[str, str | None]] = {}
    if isinstance(recipe, classify.QualityRecipe):
        for i, c in enumerate(recipe.classifiers):
            names[f"classifiers[{i}].model"] = (c.model, getattr(c, "filename", None))
        if recipe.rating is not None:
            names.update({k: (v, None) for k, v in llm_files(recipe.rating.llm, recipe.rating.tokenizer,
                                                              "rating.").items()})
    elif isinstance(recipe, synthesize.SynthRecipe):
        names.update({k: (v, None) for k, v in llm_files(recipe.llm, recipe.tokenizer).items()})
        if recipe.post_filter is not None:
            names["post_filter.model"] = (recipe.post_filter.model, None)
    elif isinstance(recipe, export.ExportRecipe):
        names["tokenizer"] = (recipe.tokenizer, None)
    return {k: v for k, v in names.items() if not (is_s3(v[0]) or "://" in v[0] or local_path(v[0]))}


def _hub_models(names: dict[str, tuple[str, str | None]]) -> None:
    """Each hub model is in the local Hugging Face cache, or the hub answers for it (probed at once)."""
    if not names:
        return
    with ThreadPoolExecutor(len(names)) as pool:
        problems = list(pool.map(lambda item: _hub_problem(*item), names.values()))
    for key, (repo, _), problem in zip(names, names.values(), problems, strict=True):
        if problem:
            raise FileNotFoundError(f"{key}: {repo} {problem}")


def _hub_problem(repo: str, filename: str | None) -> str | None:
    from huggingface_hub import HfApi

    if _cached(repo, filename):
        return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "is no local path, and not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
    try:
        HfApi().model_info(repo, timeout=HUB_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001 - any failure to reach or find it says the same to the user
        reason = " ".join(str(err).split())[:200]
        return (f"is no local path, and the Hugging Face hub cannot give it ({type(err).__name__}: {reason}): "
                f"download it where the hub is reachable and give its local path")
    return None


def _cached(repo: str, filename: str | None) -> bool:
    """Whether the file (or, without one, any snapshot of the repository) is in the local cache."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    if filename:
        return isinstance(try_to_load_from_cache(repo, filename), str)
    try:
        snapshot_download(repo, local_files_only=True)
    except Exception:  # noqa: BLE001 - huggingface_hub raises several kinds for "not cached"
        return False
    return True
