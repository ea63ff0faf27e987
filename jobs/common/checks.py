"""Start-up checks several jobs make, before Ray or Spark starts: inputs, files, writable outputs, CPU engine memory.

Each raises ValueError or FileNotFoundError whose message starts with the recipe key at fault. A job's
own checks (``jobs/<job>/checks.py``) are made of these; checks of values alone live in the recipe models.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from operators.io.storage import Storage, is_s3, join

if TYPE_CHECKING:
    from operators.llm.engine import LLMConfig


def check_parquet_input(recipe) -> None:
    """``input`` (an earlier stage's output, a recipe with ``input`` and ``storage``) holds ``.parquet`` files.
    Not part of a job's ``check``: the pipeline checks its stages before the earlier ones have written their output."""
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



def llm_files(llm: LLMConfig, tokenizer: str | None, prefix: str = "") -> dict[str, str]:
    """``{key: name}`` of what an LLM stage loads itself: the tokenizer, and the model unless an endpoint
    serves it (an endpoint's model is a served name, not a path)."""
    files = {f"{prefix}tokenizer": tokenizer} if tokenizer else {}
    if llm.engine == "vllm" or tokenizer is None:
        files[f"{prefix}llm.model"] = llm.model
    return files


def llm_context(llm: LLMConfig, prefix: str = "") -> None:
    """``llm.sampling.max_tokens`` leaves room for a prompt in the model's context: ``llm.max_model_len``, else
    the ``max_position_embeddings`` in the config.json of a local model folder or of a hub model in the local
    cache (nothing is fetched; an endpoint's model is a served name, not read)."""
    context, source = llm.max_model_len, f"{prefix}llm.max_model_len"
    config = _model_config(llm.model) if context is None and llm.engine == "vllm" else None
    if config:
        with open(config) as f:
            context, source = json.load(f).get("max_position_embeddings"), f"max_position_embeddings in {config}"
    if context and llm.sampling.max_tokens >= context:
        raise ValueError(f"{prefix}llm.sampling.max_tokens: {llm.sampling.max_tokens} leaves no room for a prompt "
                         f"in the model's context of {context} tokens ({source})")


def _model_config(model: str) -> str | None:
    """The path of ``model``'s config.json on this machine, or None."""
    if local_path(model):
        path = os.path.join(os.path.expanduser(model), "config.json")
        return path if os.path.isfile(path) else None
    if is_s3(model) or "://" in model:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    return cached if isinstance(cached, str) else None


def cpu_engine_memory(llm: LLMConfig, cluster, prefix: str = "") -> None:
    """A ``device: cpu`` engine on this machine (a local Ray) has the memory for its KV cache
    (``llm.cpu_kv_cache_gb``), the weights of a local model folder and itself."""
    from jobs.common.cli import ray_address
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


def files_exist(files: dict[str, str], storage: Storage | None = None) -> None:
    """Each local path in ``files`` exists, and with ``storage`` each s3:// URI too (hub ids are not checked)."""
    for key, name in files.items():
        if storage is not None and is_s3(name):
            exists(storage, name, key)
        elif local_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise FileNotFoundError(f"{key}: {name} does not exist")


def local_path(name: str) -> bool:
    """Whether a model or tokenizer name means a local folder rather than a hub id (``org/name``)."""
    if "://" in name:
        return False
    parts = name.split("/")
    return name.startswith(("/", ".", "~")) or len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def exists(storage: Storage, uri: str, key: str) -> None:
    try:
        found = storage.exists(uri)
    except OSError as err:
        raise ValueError(f"{key}: cannot read {uri}: {err}") from None
    if not found:
        raise FileNotFoundError(f"{key}: {uri} does not exist")




def writable(storage: Storage, root: str, key: str) -> None:
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
