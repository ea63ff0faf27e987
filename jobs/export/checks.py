"""The export's start-up checks: the tokenizer loads and has the EOS asked for; ``output`` is writable."""

from __future__ import annotations

from jobs.common.checks import files_exist, local_path, writable
from jobs.export.recipe import ExportRecipe
from operators.export.tokenize import ExportTokenizer
from operators.io.storage import Storage, is_s3


def check(recipe: ExportRecipe, hub: bool = False) -> ExportTokenizer:
    """Load a local tokenizer here (a missing folder fails now, in one line) and return it. A hub id is loaded
    only with ``hub`` (the job's own start): the pipeline checks hub models after every stage's files."""
    files_exist({"tokenizer": recipe.tokenizer})
    tokenizer = ExportTokenizer(recipe.tokenizer, recipe.eos, recipe.fast_bpe)
    if hub or local_path(recipe.tokenizer) or is_s3(recipe.tokenizer):
        load(recipe, tokenizer)
    writable(Storage(**recipe.storage.model_dump()), recipe.output, "output")
    return tokenizer


def load(recipe: ExportRecipe, tokenizer: ExportTokenizer) -> None:
    try:
        tokenizer.backend  # noqa: B018 - loads it
    except (OSError, ValueError) as err:
        raise ValueError(f"tokenizer: cannot load {recipe.tokenizer}: {' '.join(str(err).split())[:300]}") from None
    tokenizer.eos_id  # noqa: B018 - raises ValueError naming ``eos`` if the token is not in the vocabulary
