"""Synthesis's start-up checks: API key, model and tokenizer paths, context, a CPU engine's memory, the output."""

from __future__ import annotations

import os

from jobs.common.checks import cpu_engine_memory, exists, files_exist, llm_context, llm_files, writable
from jobs.synthesize.recipe import SynthRecipe
from operators.io.storage import Storage, is_s3


def check(recipe: SynthRecipe) -> None:
    """The API key's variable is set, local model and tokenizer paths and an s3:// tokenizer exist,
    ``max_tokens`` fits the model's context, a CPU engine fits this machine's memory, ``output`` is writable."""
    llm = recipe.llm
    if llm.engine == "openai" and llm.endpoint.api_key_env and not os.environ.get(llm.endpoint.api_key_env):
        raise ValueError(f"llm.endpoint.api_key_env: environment variable {llm.endpoint.api_key_env} is not set")
    if recipe.tokenizer is None and is_s3(llm.model):
        raise ValueError("tokenizer: required when llm.model is an s3:// URI (chunking loads it with transformers)")
    storage = Storage(**recipe.storage.model_dump())
    files_exist(llm_files(llm, recipe.tokenizer))
    if recipe.tokenizer is not None and is_s3(recipe.tokenizer):  # chunking reads it before any engine starts
        exists(storage, recipe.tokenizer, "tokenizer")
    llm_context(llm)
    cpu_engine_memory(llm, recipe.ray)
    writable(storage, recipe.output, "output")
