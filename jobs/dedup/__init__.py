"""Dedup: global URL, exact and MinHash-LSH fuzzy deduplication of a run's shards on PySpark."""

from jobs.dedup.job import check, main, run
from jobs.dedup.recipe import DedupRecipe

__all__ = ["DedupRecipe", "check", "main", "run"]
