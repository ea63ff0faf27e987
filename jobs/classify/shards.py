"""The quality job's shards: which input shards there are and which are left to do (its ledger)."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq

from jobs.classify.recipe import QualityRecipe
from operators.io.layout import shard_key
from operators.io.ledger import pending
from operators.io.storage import Storage

log = logging.getLogger("cc_refinery.classify")


def check_input(recipe: QualityRecipe, storage: Storage, first: str) -> None:
    """The input has ``id`` and ``text``, and every bucketed score not made by this run."""
    fs, inner = storage.filesystem(first)
    names = pq.read_schema(inner, filesystem=fs).names
    missing = [c for c in ("id", "text") if c not in names]
    produced = {c.name for c in recipe.classifiers}
    if recipe.buckets:
        missing += [f"{n}_score" for n in recipe.buckets.classifiers if n not in produced and f"{n}_score" not in names]
    if missing:
        raise ValueError(f"input: {first} has no column(s) {', '.join(missing)} (buckets.classifiers names a "
                         f"classifier of this recipe, or a <name>_score column of the input)" if recipe.buckets
                         else f"input: {first} has no column(s) {', '.join(missing)}")


def plan(recipe: QualityRecipe, storage: Storage) -> tuple[dict[str, str], list[str], str]:
    """(input shards by key, keys to do, ledger folder), after checking the input and sweeping staging files."""
    paths = {shard_key(p): p for p in storage.walk(recipe.input, ".parquet")}
    if not paths:
        raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")
    check_input(recipe, storage, next(iter(paths.values())))
    todo, ledger = pending(storage, paths, recipe.output, log)
    return paths, todo, ledger
