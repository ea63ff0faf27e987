"""The end-to-end mixture: curate -> dedup -> quality -> synthesis stages -> mixture.json."""

from jobs.pipeline.job import main, run
from jobs.pipeline.recipe import MixtureRecipe

__all__ = ["MixtureRecipe", "main", "run"]
