"""Synthesis: every prompt family (rephrase, rewrite, think) and ProX refinement on one LLM engine."""

from jobs.synthesize.checks import check
from jobs.synthesize.job import main, run
from jobs.synthesize.recipe import SynthRecipe

__all__ = ["SynthRecipe", "check", "main", "run"]
