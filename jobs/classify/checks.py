"""The quality job's start-up checks: classifier and rating models exist, a CPU engine's memory, the output."""

from __future__ import annotations

from jobs.classify.recipe import QualityRecipe
from jobs.common.checks import cpu_engine_memory, files_exist, llm_files, writable
from operators.io.storage import Storage


def check(recipe: QualityRecipe) -> None:
    """Each classifier's local or s3:// model, the rating's local model and tokenizer exist, the rating's CPU
    engine fits this machine's memory; ``output`` is writable."""
    storage = Storage(**recipe.storage.model_dump())
    files = {f"classifiers[{i}].model": c.model for i, c in enumerate(recipe.classifiers)}
    if recipe.rating is not None:
        files.update(llm_files(recipe.rating.llm, recipe.rating.tokenizer, "rating."))
    files_exist(files, storage)
    if recipe.rating is not None:
        cpu_engine_memory(recipe.rating.llm, recipe.ray, "rating.")
    writable(storage, recipe.output, "output")
