"""Curation: WARC/WET shards -> extraction -> language id -> heuristic filters -> Parquet."""

from jobs.curate.checks import check
from jobs.curate.job import main, run
from jobs.curate.recipe import Recipe, load_recipe

__all__ = ["Recipe", "check", "load_recipe", "main", "run"]
