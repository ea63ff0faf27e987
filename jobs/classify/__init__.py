"""Quality: model scores (fastText, transformer classifiers, Nemotron-CC buckets) or an LLM rating."""

from jobs.classify.checks import check
from jobs.classify.job import cluster_problem, main, run
from jobs.classify.recipe import QualityRecipe

__all__ = ["QualityRecipe", "check", "cluster_problem", "main", "run"]
