"""What an LLM pipeline asks of the cluster, checked before anything is scheduled.

The engine replicas hold their CPUs (and GPUs) for the whole run. Every helper stage (request
building, pre/post-processing, chat template, tokenize, detokenize, HTTP clients) gets an equal
share of the CPUs left beside them, at most a quarter CPU each on a CPU engine (the cores are
the engine's) and one CPU beside GPU engines. So the pipeline fits the cluster it is on, where a
helper asking for a whole CPU would wait forever behind the engine.
"""

from __future__ import annotations

import math

from operators.llm.engine import LLMConfig

MIN_HELPER_CPUS = 0.05
VLLM_HELPERS = 6  # requests, preprocess, chat template, tokenize, detokenize, postprocess
HTTP_HELPERS = 3  # requests, preprocess, postprocess; plus one per HTTP client


def min_replicas(llm: LLMConfig) -> int:
    return llm.replicas if isinstance(llm.replicas, int) else llm.replicas[0]


def engine_gpus(llm: LLMConfig) -> int:
    """GPUs the smallest allowed set of engine replicas holds."""
    if llm.engine != "vllm" or llm.device != "gpu":
        return 0
    return min_replicas(llm) * llm.tensor_parallel_size * llm.pipeline_parallel_size


def engine_cpus(llm: LLMConfig) -> float:
    """CPUs the smallest allowed set of engine replicas holds (one per replica)."""
    return float(min_replicas(llm)) if llm.engine == "vllm" else 0.0


def helpers(llm: LLMConfig) -> int:
    return VLLM_HELPERS if llm.engine == "vllm" else HTTP_HELPERS + llm.endpoint.concurrency


def missing(llm: LLMConfig, cpus: float, gpus: float) -> str | None:
    """One line naming what the cluster lacks for this pipeline and the setting to change, or None."""
    need = engine_gpus(llm)
    if gpus < need:
        return (f"llm.device: gpu needs {need} GPU(s) (llm.replicas x tensor_parallel_size x "
                f"pipeline_parallel_size) and the cluster has {gpus:g}: add GPU nodes, or set llm.device=cpu "
                f"to run on vLLM's CPU build")
    spare = cpus - engine_cpus(llm)
    if spare < helpers(llm) * MIN_HELPER_CPUS:
        return (f"ray: the cluster has {cpus:g} CPU(s); {engine_cpus(llm):g} go to the engine replicas "
                f"(llm.replicas) and {helpers(llm)} helper stages need {helpers(llm) * MIN_HELPER_CPUS:g} more: "
                f"lower llm.replicas, or give Ray more CPUs (ray.num_cpus, or a bigger cluster)")
    return None


def helper_cpus(llm: LLMConfig, cpus: float) -> float:
    """The CPUs each helper stage asks for on a cluster of ``cpus`` (after :func:`missing` passed)."""
    cap = 0.25 if llm.engine == "vllm" and llm.device == "cpu" else 1.0
    share = (cpus - engine_cpus(llm)) / helpers(llm)
    return math.floor(max(MIN_HELPER_CPUS, min(cap, share)) * 100) / 100
