"""Start-up checks that touch files, the environment or models, run before Ray or Spark starts.

Each raises ValueError or FileNotFoundError whose message starts with the recipe key at fault.
Checks of values alone live in the pydantic models (``jobs/config.py`` and the config classes).
"""

from __future__ import annotations

import errno
import os
import uuid
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from operators.io.listing import resolve_inputs, shard_names
from operators.io.storage import Storage, is_s3, join

if TYPE_CHECKING:
    from jobs.classify_config import QualityRecipe
    from jobs.config import Recipe
    from jobs.dedup import DedupRecipe
    from jobs.synthesize import SynthRecipe
    from operators.llm.engine import LLMConfig


def check_curate(recipe: Recipe) -> dict[str, str]:
    """Blocklists and fastText models exist, language codes and the quality label are the models', the
    input resolves to shards, ``output.root`` is writable (in that order); return the input shards by name."""
    storage = Storage(**recipe.storage.model_dump())
    for name, params in recipe.steps:
        if name == "url":
            for key in ("blocklists", "url_blocklists", "banned_words", "soft_banned_words", "banned_subwords"):
                for uri in params[key]:
                    _exists(storage, uri, f"pipeline.url.{key}")
        elif name == "language":
            _languages(storage, params)
        elif name == "dclm_fasttext":
            _quality_classifier(storage, params)
    i = recipe.input
    names = shard_names(resolve_inputs(storage, i.paths, i.crawl, i.format, i.shards, i.limit))
    _writable(storage, recipe.output.root, "output.root")
    return names


def check_parquet_input(recipe: DedupRecipe | QualityRecipe | SynthRecipe) -> None:
    """``input`` (an earlier stage's output) holds ``.parquet`` files. Not part of ``check_dedup`` and the
    others: the pipeline checks its stages before the earlier ones have written their output."""
    storage = Storage(**recipe.storage.model_dump())
    try:
        if storage.walk(recipe.input, ".parquet"):
            return
        found = storage.exists(recipe.input)
    except (OSError, ClientError) as err:
        raise ValueError(f"input: cannot read {recipe.input}: {' '.join(str(err).split())}") from None
    if not found:
        raise FileNotFoundError(f"input: {recipe.input} does not exist")
    raise FileNotFoundError(f"input: no .parquet files under {recipe.input}")


def check_dedup(recipe: DedupRecipe) -> None:
    """``output`` is writable."""
    _writable(Storage(**recipe.storage.model_dump()), recipe.output, "output")


def check_synthesize(recipe: SynthRecipe) -> None:
    """The API key's variable is set, local model and tokenizer paths exist, a CPU engine fits this machine's
    memory, ``output`` is writable."""
    llm = recipe.llm
    if llm.engine == "openai" and llm.endpoint.api_key_env and not os.environ.get(llm.endpoint.api_key_env):
        raise ValueError(f"llm.endpoint.api_key_env: environment variable {llm.endpoint.api_key_env} is not set")
    if recipe.tokenizer is None and is_s3(llm.model):
        raise ValueError("tokenizer: required when llm.model is an s3:// URI (chunking loads it with transformers)")
    _files_exist(_llm_files(llm, recipe.tokenizer))
    _cpu_engine_memory(llm, recipe.ray)
    _writable(Storage(**recipe.storage.model_dump()), recipe.output, "output")


def check_quality(recipe: QualityRecipe) -> None:
    """Each classifier's local or s3:// model, the rating's local model and tokenizer exist, the rating's CPU
    engine fits this machine's memory; ``output`` is writable."""
    storage = Storage(**recipe.storage.model_dump())
    files = {f"classifiers[{i}].model": c.model for i, c in enumerate(recipe.classifiers)}
    if recipe.rating is not None:
        files.update(_llm_files(recipe.rating.llm, recipe.rating.tokenizer, "rating."))
    _files_exist(files, storage)
    if recipe.rating is not None:
        _cpu_engine_memory(recipe.rating.llm, recipe.ray, "rating.")
    _writable(storage, recipe.output, "output")


def _llm_files(llm: LLMConfig, tokenizer: str | None, prefix: str = "") -> dict[str, str]:
    """``{key: name}`` of what an LLM stage loads itself: the tokenizer, and the model unless an endpoint
    serves it (an endpoint's model is a served name, not a path)."""
    files = {f"{prefix}tokenizer": tokenizer} if tokenizer else {}
    if llm.engine == "vllm" or tokenizer is None:
        files[f"{prefix}llm.model"] = llm.model
    return files


def _cpu_engine_memory(llm: LLMConfig, cluster, prefix: str = "") -> None:
    """A ``device: cpu`` engine on this machine (a local Ray) has the memory for its KV cache
    (``llm.cpu_kv_cache_gb``), the weights of a local model folder and itself."""
    from jobs.cli import ray_address
    from operators.llm.resources import available_memory, cpu_memory_shortfall

    if llm.engine != "vllm" or llm.device != "cpu" or ray_address(cluster) != "local":
        return
    available = available_memory()
    folder = os.path.expanduser(llm.model)
    weights = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
                  if name.endswith((".safetensors", ".bin", ".pt", ".pth"))) if os.path.isdir(folder) else 0
    problem = cpu_memory_shortfall(llm, available, weights, prefix) if available is not None else None
    if problem:
        raise ValueError(problem)


def _files_exist(files: dict[str, str], storage: Storage | None = None) -> None:
    """Each local path in ``files`` exists, and with ``storage`` each s3:// URI too (hub ids are not checked)."""
    for key, name in files.items():
        if storage is not None and is_s3(name):
            _exists(storage, name, key)
        elif _local_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise FileNotFoundError(f"{key}: {name} does not exist")


def _local_path(name: str) -> bool:
    """Whether a model or tokenizer name means a local folder rather than a hub id (``org/name``)."""
    if "://" in name:
        return False
    parts = name.split("/")
    return name.startswith(("/", ".", "~")) or len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def _exists(storage: Storage, uri: str, key: str) -> None:
    try:
        found = storage.exists(uri)
    except OSError as err:
        raise ValueError(f"{key}: cannot read {uri}: {err}") from None
    if not found:
        raise FileNotFoundError(f"{key}: {uri} does not exist")


def _languages(storage: Storage, params: dict) -> None:
    """Load the language model (cached for the process) and check ``languages`` against its labels."""
    from operators.filters.language import load_model

    if params["model"]:
        _exists(storage, params["model"], "pipeline.language.model")
    try:
        labels = [label.removeprefix("__label__") for label in load_model(params["model"], storage).get_labels()]
    except ValueError:
        raise ValueError(f"pipeline.language.model: {params['model']} is not a fastText model") from None
    unknown = [code for code in params["languages"] if code not in labels]
    if unknown:
        raise ValueError(f"pipeline.language.languages: {', '.join(map(repr, unknown))} not among the model's "
                         f"{len(labels)} language codes, which are like {', '.join(labels[:5])}")


def _quality_classifier(storage: Storage, params: dict) -> None:
    """Load the quality model (path, s3:// or hub id; cached for the process) and check its labels."""
    from operators.filters.fasttext_quality import FastTextQualityFilter

    if is_s3(params["model"]):
        _exists(storage, params["model"], "pipeline.dclm_fasttext.model")
    FastTextQualityFilter(storage=storage, **params)


def _writable(storage: Storage, root: str, key: str) -> None:
    """Write and delete a probe under ``root`` (named with a ``_``, so dataset readers skip it); on local disk
    in the nearest folder that exists, so that a job stopped at start leaves no folder behind."""
    folder = root
    if not is_s3(root):
        folder = os.path.abspath(os.path.expanduser(root))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
    probe = join(folder, f"_preflight-{uuid.uuid4().hex}")
    try:
        if not is_s3(root) and not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
        storage.write_text(probe, "")
        storage.delete(probe)
    except (OSError, ClientError) as err:
        raise ValueError(f"{key}: cannot write to {root}: {err}") from None
