"""Benchmark decontamination: an n-gram index of the user's evaluation files; matching documents removed or cut."""

from jobs.decontaminate.checks import check
from jobs.decontaminate.job import main, run
from jobs.decontaminate.recipe import DecontamRecipe

__all__ = ["DecontamRecipe", "check", "main", "run"]
