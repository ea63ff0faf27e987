"""Export: shuffled, tokenized training shards (Megatron-LM .bin/.idx or datatrove .ds) from a mixture."""

from jobs.export.checks import check
from jobs.export.job import main, run
from jobs.export.recipe import ExportRecipe

__all__ = ["ExportRecipe", "check", "main", "run"]
