"""The decontamination job's start-up checks: every evaluation file exists (a Parquet one with its fields), the
output is writable."""

from __future__ import annotations

from jobs.common.checks import exists, writable
from jobs.decontaminate.recipe import DecontamRecipe
from operators.decontam.evals import missing_columns
from operators.io.storage import Storage


def check(recipe: DecontamRecipe) -> None:
    """Each ``evals[i].path`` (local or s3://) exists, a Parquet one with a column per field; ``output`` is
    writable."""
    storage = Storage(**recipe.storage.model_dump())
    for i, evaluation in enumerate(recipe.evals):
        exists(storage, evaluation.path, f"evals[{i}].path")
        parquet = evaluation.path.endswith(".parquet")
        if parquet and (problem := missing_columns(storage, evaluation.path, evaluation.fields)):
            raise ValueError(f"evals[{i}].fields: {problem}")
    writable(storage, recipe.output, "output")
