"""The decontamination job's start-up checks: every evaluation file exists, the output is writable."""

from __future__ import annotations

from jobs.common.checks import exists, writable
from jobs.decontaminate.recipe import DecontamRecipe
from operators.io.storage import Storage


def check(recipe: DecontamRecipe) -> None:
    """Each ``evals[i].path`` (local or s3://) exists; ``output`` is writable."""
    storage = Storage(**recipe.storage.model_dump())
    for i, evaluation in enumerate(recipe.evals):
        exists(storage, evaluation.path, f"evals[{i}].path")
    writable(storage, recipe.output, "output")
