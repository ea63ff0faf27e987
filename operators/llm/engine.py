"""Generation engines as Ray Data processors: vLLM through Ray's own ``ray.data.llm``, an endpoint through ours.

``vllm``: vLLM replicas on GPU workers (or vLLM's CPU build with ``device: cpu``), chat template,
tokenisation and detokenisation done by ray.data.llm's stages. ``openai``: any OpenAI-compatible
``/chat/completions`` endpoint through one HTTP stage of our own (:mod:`operators.llm.endpoint`). Either way
a request row carries ``request_key``, ``prompt_name`` (a prompt name or path), ``chunk`` and ``request_seed``; the
messages are rendered on the workers from the prompt file; every result row gets ``generated``, ``tokens_in``,
``tokens_out``, ``truncated`` (stopped at ``max_tokens``) and ``error`` (what an endpoint answered
instead of a choice, else empty). On ``device: cpu`` the engine's KV cache is ``cpu_kv_cache_gb``
(``kv_cache_memory_bytes``), never a share of the machine's memory. Endpoint requests are retried
with backoff on 408/429/502/503/504 and dropped connections (``endpoint.retries``); past that the
run stops, its shards left unfinished.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from operators.llm.prompts import load_prompt
from operators.log_filters import drop
from operators.params import Strict

GIB = 1 << 30
KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
AOT_ENV = "VLLM_USE_AOT_COMPILE"
PASS_THROUGH = ("request_key", "shard_key", "parent_id", "prompt_name", "chunk_index", "chunks", "chunk",
                "request_seed", "expected")


class SamplingConfig(Strict):
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    seed: int = 0

    def request(self, seed: int) -> dict:
        """A request's sampling fields, the same for vLLM and an endpoint."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": seed}


class EndpointConfig(Strict):
    url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    qps: int | None = Field(None, ge=1)
    concurrency: int = Field(4, ge=1, description="requests in flight at once")
    retries: int = Field(5, ge=0, description="per request, on 408/429/502/503/504 and dropped connections")
    retry_backoff_s: float = Field(1.0, ge=0, description="first wait before a retry; doubles each time")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL with a host, like http://127.0.0.1:8000/v1")
        return url


class LLMConfig(Strict):
    engine: Literal["vllm", "openai"] = "vllm"
    model: str = Field(description="hub id, local path, or s3:// URI (fetched by ray.data.llm)")
    device: Literal["gpu", "cpu"] = "gpu"
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"  # vLLM's --dtype choices
    max_model_len: int | None = Field(None, ge=128, description="default: the model's own context length")
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    replicas: int | tuple[int, int] = Field(1, description="fixed count, or (min, max) to autoscale")
    batch_size: int = Field(64, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="device: gpu only (see cpu_kv_cache_gb)")
    cpu_kv_cache_gb: float = Field(1.0, gt=0, description="device: cpu: GiB of memory the engine reserves for its KV "
                                                          "cache (vLLM's VLLM_CPU_KVCACHE_SPACE, or engine_kwargs."
                                                          "kv_cache_memory_bytes, win when set)")
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    engine_kwargs: dict = Field(default_factory=dict, description="any further vLLM engine argument")
    max_restarts: int = Field(3, ge=0, description="restarts of a dying engine replica before the job fails")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, replicas: int | tuple[int, int]) -> int | tuple[int, int]:
        low, high = (replicas, replicas) if isinstance(replicas, int) else replicas
        if not 1 <= low <= high:
            raise ValueError("must be a count >= 1, or [min, max] with 1 <= min <= max")
        return replicas


def engine_kwargs(llm: LLMConfig) -> dict:
    """vLLM engine arguments: the recipe's settings, then ``engine_kwargs`` over them."""
    kwargs = {"dtype": llm.dtype, "tensor_parallel_size": llm.tensor_parallel_size,
              "pipeline_parallel_size": llm.pipeline_parallel_size,
              "gpu_memory_utilization": llm.gpu_memory_utilization,
              "enable_prefix_caching": llm.enable_prefix_caching, "enforce_eager": llm.enforce_eager}
    if llm.max_model_len:
        kwargs["max_model_len"] = llm.max_model_len
    if llm.device == "cpu":
        # vLLM's CPU build reads gpu_memory_utilization as a share of the NUMA node's memory that must be
        # free at start (0.9 fails on any machine in use); an explicit KV cache size skips that check.
        kwargs["kv_cache_memory_bytes"] = int(llm.cpu_kv_cache_gb * GIB)
        # vLLM's CPU build cannot rewind a seeded sampler ("CPU Generator does not use offset"),
        # which a prompt split over several prefill chunks needs: prefill each prompt whole.
        kwargs["enable_chunked_prefill"] = False
    return {**kwargs, **llm.engine_kwargs}


def cpu_kv_cache(llm: LLMConfig, environ: dict | None = None) -> tuple[int, str]:
    """Bytes of KV cache a ``device: cpu`` engine reserves, and the setting that decides it: vLLM's own
    ``VLLM_CPU_KVCACHE_SPACE`` (GiB) in the engine's environment wins over everything (vLLM applies it),
    then ``llm.engine_kwargs.kv_cache_memory_bytes``, then ``llm.cpu_kv_cache_gb``."""
    space = (os.environ if environ is None else environ).get(KV_ENV, "")
    if space.strip():
        if not space.strip().isdigit():
            raise ValueError(f"{KV_ENV}: {space!r} is not a whole number of GiB (vLLM reads it with int())")
        return int(space) * GIB, KV_ENV
    if llm.engine_kwargs.get("kv_cache_memory_bytes") is not None:
        return int(llm.engine_kwargs["kv_cache_memory_bytes"]), "llm.engine_kwargs.kv_cache_memory_bytes"
    return int(llm.cpu_kv_cache_gb * GIB), "llm.cpu_kv_cache_gb"


def _vllm(llm: LLMConfig, helper_cpus: float):
    cpu = llm.device == "cpu"
    if cpu:  # vLLM's CPU build says on import that a CPU has no GPU Triton: a fact, not a problem
        drop("vllm.triton_utils.importing", below=logging.ERROR)
    # ray.data.llm says it found no cloud mirror for a model given as a local or hub path
    drop("ray.llm.ray.llm._internal.common.utils.download_utils", below=logging.WARNING)
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    helper = {"enabled": True, "num_cpus": helper_cpus}
    # on device: cpu the engine tokenizes and detokenizes in its own process: two more actors, each importing
    # transformers, would only slow the start on the cores the engine needs (operators/llm/resources.py)
    tokens = {**helper, "enabled": not cpu}
    config = vLLMEngineProcessorConfig(
        model_source=llm.model, engine_kwargs=engine_kwargs(llm), batch_size=llm.batch_size,
        concurrency=llm.replicas, log_engine_metrics=not cpu,
        placement_group_config={"bundles": [{"CPU": 1}]} if cpu else None,
        chat_template_stage=helper, tokenize_stage=tokens, detokenize_stage=tokens)

    def pre(row: dict) -> dict:
        return {"messages": load_prompt(row["prompt_name"]).messages(row["chunk"]),
                "sampling_params": llm.sampling.request(int(row["request_seed"])), **{k: row[k] for k in PASS_THROUGH}}

    def post(row: dict) -> dict:
        tokens_out = int(row.get("num_generated_tokens") or 0)
        return {**{k: row[k] for k in PASS_THROUGH}, "generated": row.get("generated_text") or "",
                "tokens_in": int(row.get("num_input_tokens") or 0), "tokens_out": tokens_out,
                "truncated": tokens_out >= llm.sampling.max_tokens, "error": ""}

    processor = build_processor(config, preprocess=pre, postprocess=post,
                                preprocess_map_kwargs={"num_cpus": helper_cpus},
                                postprocess_map_kwargs={"num_cpus": helper_cpus})
    engine = processor.get_stage_by_name("vLLMEngineStage").map_batches_kwargs
    # Ray Data restarts a dead actor forever by default: an engine that keeps dying would never end the job.
    engine["max_restarts"] = llm.max_restarts
    if cpu and AOT_ENV not in os.environ:
        # vLLM's CPU build saves AOT-compiled graphs it cannot load back ("'function' object has no attribute
        # 'finalize_loading'"), so every start compiled again; without AOT a later start loads the graphs
        # compiled by the first from VLLM_CACHE_ROOT (measured on a tiny model: warm-up 10 s -> 5 s)
        runtime_env = dict(engine.get("runtime_env") or {})
        runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), AOT_ENV: "0"}
        engine["runtime_env"] = runtime_env
    return processor


def _openai(llm: LLMConfig, helper_cpus: float):
    from operators.llm.endpoint import EndpointStage

    def processor(requests):
        return requests.map_batches(EndpointStage, fn_constructor_kwargs={"llm": llm, "keep": PASS_THROUGH},
                                    batch_size=llm.batch_size, batch_format="pyarrow", concurrency=1,
                                    num_cpus=helper_cpus)

    return processor


def engine_errors(key: str, results: list[dict]) -> dict[str, int]:
    """The endpoint's error answers among a shard's results, most common first (for its ledger entry).
    Raises RuntimeError when every request failed: a broken endpoint, not bad documents, so the shard
    is left unfinished and a re-run redoes it."""
    errors = Counter(r["error"] for r in results if r["error"])
    if results and errors.total() == len(results):
        raise RuntimeError(f"shard {key}: the endpoint answered all {len(results)} requests with an error, "
                           f"e.g. {next(iter(errors))}")
    return dict(errors.most_common(5))


def build_engine(llm: LLMConfig, helper_cpus: float):
    """A Ray Data processor: ``processor(dataset_of_requests) -> dataset_of_results``; every stage
    around the engine asks for ``helper_cpus`` (see :mod:`operators.llm.resources`)."""
    return _vllm(llm, helper_cpus) if llm.engine == "vllm" else _openai(llm, helper_cpus)
