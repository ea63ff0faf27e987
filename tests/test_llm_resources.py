"""What the LLM pipeline asks of a cluster: exact shares, and the one-line shortfalls."""

import pytest

from operators.llm.engine import LLMConfig
from operators.llm.resources import helper_cpus, missing


def llm(**kw) -> LLMConfig:
    return LLMConfig(model="m", **kw)


@pytest.mark.parametrize("config, cpus, share", [
    (llm(device="cpu"), 2, 0.25),  # 1 CPU left beside the engine, 4 helper stages (it tokenizes itself)
    (llm(device="cpu"), 1.5, 0.12),
    (llm(device="cpu"), 16, 0.25),  # capped: the cores are the engine's
    (llm(device="gpu", replicas=8), 64, 1.0),
    (llm(device="gpu", replicas=(2, 8)), 8, 1.0),
    (llm(engine="openai", endpoint={"concurrency": 64}), 2, 0.66),  # 3 helpers: one HTTP client for any concurrency
])
def test_helpers_share_what_the_engines_leave(config, cpus, share):
    assert missing(config, cpus, 8) is None
    assert helper_cpus(config, cpus) == share


def test_shortfalls_name_the_setting():
    assert missing(llm(tensor_parallel_size=2, replicas=2), 64, 2) == (
        "llm.device: gpu needs 4 GPU(s) (llm.replicas x tensor_parallel_size x pipeline_parallel_size) and the "
        "cluster has 2: add GPU nodes, or set llm.device=cpu to run on vLLM's CPU build")
    assert missing(llm(device="cpu", replicas=2), 2, 0) == (
        "ray: the cluster has 2 CPU(s); 2 go to the engine replicas (llm.replicas) and 4 helper stages need 0.2 more: "
        "lower llm.replicas, or give Ray more CPUs (ray.num_cpus, or a bigger cluster)")
    assert missing(llm(engine="openai", device="gpu"), 1, 0) is None  # an endpoint needs no local GPU


def test_a_cpu_engine_sizes_its_kv_cache_from_the_recipe_and_an_explicit_setting_wins():
    from operators.llm.engine import cpu_kv_cache, engine_kwargs

    cpu = llm(device="cpu", gpu_memory_utilization=0.9)  # the recipe's GPU share: never a share of node 0 on CPU
    assert engine_kwargs(cpu)["kv_cache_memory_bytes"] == 1 << 30 and "kv_cache_memory_bytes" not in engine_kwargs(
        llm(device="gpu"))
    assert engine_kwargs(llm(device="cpu", cpu_kv_cache_gb=0.5))["kv_cache_memory_bytes"] == 1 << 29
    assert cpu_kv_cache(cpu, {}) == (1 << 30, "llm.cpu_kv_cache_gb")
    mine = llm(device="cpu", engine_kwargs={"kv_cache_memory_bytes": 123})
    assert engine_kwargs(mine)["kv_cache_memory_bytes"] == 123
    assert cpu_kv_cache(mine, {}) == (123, "llm.engine_kwargs.kv_cache_memory_bytes")
    assert cpu_kv_cache(mine, {"VLLM_CPU_KVCACHE_SPACE": "3"}) == (3 << 30, "VLLM_CPU_KVCACHE_SPACE")  # vLLM's own
    with pytest.raises(ValueError, match="^VLLM_CPU_KVCACHE_SPACE: '1.5' is not a whole number of GiB"):
        cpu_kv_cache(cpu, {"VLLM_CPU_KVCACHE_SPACE": "1.5"})


def test_a_cpu_engine_that_does_not_fit_the_memory_names_the_setting():
    from operators.llm.resources import available_memory, cpu_memory_shortfall

    gib = 1 << 30
    assert cpu_memory_shortfall(llm(device="cpu"), 3 * gib, 0, environ={}) is None  # 1 GiB + the engine's 2
    assert cpu_memory_shortfall(llm(device="cpu", cpu_kv_cache_gb=4), 100 * gib, 90 * gib, "rating.", {}) is None
    assert cpu_memory_shortfall(llm(device="gpu", cpu_kv_cache_gb=4), gib, environ={}) is None
    assert cpu_memory_shortfall(llm(device="cpu", cpu_kv_cache_gb=4), 6 * gib, gib // 2, "rating.", {}) == (
        "rating.llm.cpu_kv_cache_gb: the CPU engine needs 6.5 GiB (KV cache 4 GiB, the model's weights 0.5 GiB, the "
        "engine about 2 GiB) and this machine has 6.0 GiB available: lower rating.llm.cpu_kv_cache_gb, or free memory")
    assert cpu_memory_shortfall(llm(device="cpu"), 4 * gib, 0, environ={"VLLM_CPU_KVCACHE_SPACE": "8"}) == (
        "VLLM_CPU_KVCACHE_SPACE: the CPU engine needs 10.0 GiB (KV cache 8 GiB, the engine about 2 GiB) and this "
        "machine has 4.0 GiB available: lower VLLM_CPU_KVCACHE_SPACE (it overrides llm.cpu_kv_cache_gb), or free "
        "memory")
    assert 0 < available_memory() < 1 << 50  # this machine's, read as vLLM's CPU build reads it
