"""What the LLM pipeline asks of a cluster: exact shares, and the one-line shortfalls."""

import pytest

from operators.llm.engine import LLMConfig
from operators.llm.resources import helper_cpus, missing


def llm(**kw) -> LLMConfig:
    return LLMConfig(model="m", **kw)


@pytest.mark.parametrize("config, cpus, share", [
    (llm(device="cpu"), 2, 0.16),  # 1 CPU left beside the engine, 6 helper stages
    (llm(device="cpu"), 16, 0.25),  # capped: the cores are the engine's
    (llm(device="gpu", replicas=8), 64, 1.0),
    (llm(device="gpu", replicas=(2, 8)), 8, 1.0),
    (llm(engine="openai"), 2, 0.28),  # 3 helpers + 4 HTTP clients
])
def test_helpers_share_what_the_engines_leave(config, cpus, share):
    assert missing(config, cpus, 8) is None
    assert helper_cpus(config, cpus) == share


def test_shortfalls_name_the_setting():
    assert missing(llm(tensor_parallel_size=2, replicas=2), 64, 2) == (
        "llm.device: gpu needs 4 GPU(s) (llm.replicas x tensor_parallel_size x pipeline_parallel_size) and the "
        "cluster has 2: add GPU nodes, or set llm.device=cpu to run on vLLM's CPU build")
    assert missing(llm(device="cpu", replicas=2), 2, 0) == (
        "ray: the cluster has 2 CPU(s); 2 go to the engine replicas (llm.replicas) and 6 helper stages need 0.3 more: "
        "lower llm.replicas, or give Ray more CPUs (ray.num_cpus, or a bigger cluster)")
    assert missing(llm(engine="openai", device="gpu"), 1, 0) is None  # an endpoint needs no local GPU
