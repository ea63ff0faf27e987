"""The export's start-up checks: the tokenizer loads and has the EOS asked for; ``output`` is writable."""

from __future__ import annotations

from jobs.common.checks import files_exist, writable
from jobs.export.recipe import ExportRecipe
from operators.export.tokenize import ExportTokenizer
from operators.io.storage import Storage


def check(recipe: ExportRecipe) -> ExportTokenizer:
    """Load the tokenizer once here (a missing folder or unknown hub id fails now, in one line); return it."""
    files_exist({"tokenizer": recipe.tokenizer})
    tokenizer = ExportTokenizer(recipe.tokenizer, recipe.eos, recipe.fast_bpe)
    try:
        tokenizer.backend  # noqa: B018 - loads it
    except (OSError, ValueError) as err:
        raise ValueError(f"tokenizer: cannot load {recipe.tokenizer}: {' '.join(str(err).split())[:300]}") from None
    tokenizer.eos_id  # noqa: B018 - raises ValueError naming ``eos`` if the token is not in the vocabulary
    writable(Storage(**recipe.storage.model_dump()), recipe.output, "output")
    return tokenizer
