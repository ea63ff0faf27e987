"""What an LLM pipeline asks of the cluster, checked before anything is scheduled.

The engine replicas hold their CPUs (and GPUs) for the whole run. Every helper stage (request
building, pre/post-processing, chat template, tokenize, detokenize, HTTP clients) gets an equal
share of the CPUs left beside them, at most a quarter CPU each on a CPU engine (the cores are
the engine's) and one CPU beside GPU engines. So the pipeline fits the cluster it is on, where a
helper asking for a whole CPU would wait forever behind the engine. A ``device: cpu`` engine's
memory (KV cache, weights, the engine itself) is checked against this machine's before Ray starts.
"""

from __future__ import annotations

import glob
import math
import os

from operators.llm.engine import GIB, KV_ENV, LLMConfig, cpu_kv_cache

MIN_HELPER_CPUS = 0.05
ENGINE_MEMORY_GIB = 2.0  # a vLLM CPU engine beside its KV cache and weights (tiny model: 2.8 GiB peak, 1 GiB KV)
VLLM_HELPERS = 6  # requests, preprocess, chat template, tokenize, detokenize, postprocess
HTTP_HELPERS = 3  # requests, the HTTP client (one actor, however many requests it has in flight), part files


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
    if llm.engine != "vllm":
        return HTTP_HELPERS
    return VLLM_HELPERS - 2 if llm.device == "cpu" else VLLM_HELPERS  # a CPU engine tokenizes itself


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


def cpu_memory_shortfall(llm: LLMConfig, available: int, weights: int = 0, prefix: str = "",
                         environ: dict | None = None) -> str | None:
    """One line naming the KV-cache setting when a ``device: cpu`` engine's KV cache, the model's
    ``weights`` and the engine itself (:data:`ENGINE_MEMORY_GIB`) need more than ``available`` bytes; else None."""
    if llm.engine != "vllm" or llm.device != "cpu":
        return None
    kv, key = cpu_kv_cache(llm, environ)
    need = kv + weights + ENGINE_MEMORY_GIB * GIB
    if need <= available:
        return None
    key = key if key == KV_ENV else prefix + key
    weighs = f", the model's weights {weights / GIB:.1f} GiB" if weights else ""
    return (f"{key}: the CPU engine needs {need / GIB:.1f} GiB (KV cache {kv / GIB:g} GiB{weighs}, the engine "
            f"about {ENGINE_MEMORY_GIB:g} GiB) and this machine has {available / GIB:.1f} GiB available: lower "
            f"{key}{' (it overrides llm.cpu_kv_cache_gb)' if key == KV_ENV else ''}, or free memory")


def available_memory() -> int | None:
    """Bytes free for a CPU engine here, counted as vLLM's CPU build counts them: on the NUMA node of the
    first CPU this process may use (free + file cache + reclaimable slab), within a cgroup v2 memory limit;
    the machine's MemAvailable without NUMA information; None where neither can be read (not Linux)."""
    try:
        cpu = min(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        cpu = 0
    nodes = glob.glob(f"/sys/devices/system/cpu/cpu{cpu}/node[0-9]*")
    node = _meminfo(f"/sys/devices/system/node/{os.path.basename(nodes[0]) if nodes else 'node0'}/meminfo")
    if {"MemFree", "Active(file)", "Inactive(file)", "SReclaimable"} <= node.keys():
        available = node["MemFree"] + node["Active(file)"] + node["Inactive(file)"] + node["SReclaimable"]
    else:
        available = _meminfo("/proc/meminfo").get("MemAvailable")
    if available is None:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f_max, open("/sys/fs/cgroup/memory.current") as f_now:
            limit, used = f_max.read().strip(), int(f_now.read())
        if limit.isdigit():
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def _meminfo(path: str) -> dict[str, int]:
    """``{field: bytes}`` of a meminfo file (``MemFree:  12 kB``, or a node's ``Node 0 MemFree:  12 kB``)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                names = [i for i, w in enumerate(words) if w.endswith(":")]
                if names and names[0] + 1 < len(words) and words[names[0] + 1].isdigit():
                    out[words[names[0]][:-1]] = int(words[names[0] + 1]) * (1024 if words[-1] == "kB" else 1)
    except OSError:
        pass
    return out
