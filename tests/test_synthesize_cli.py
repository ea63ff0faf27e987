"""The synthesis job as a user runs it: ``python -m jobs.synthesize`` with a shipped recipe, Ray's
default CPUs on this machine, only model, device and paths changed; and the ways it must stop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pyarrow.dataset as pads
import pytest

from tests.conftest import ROOT
from tests.test_synthesize_job import _input

WRAP = str(ROOT / "jobs" / "recipes" / "rephrase-wrap.yaml")


def synthesize(tmp_path, tiny_model, *overrides: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # as a user runs it: the recipe sizes the CPU engine's KV cache
    src = _input(tmp_path / "in")
    sets = [f"input={src}", f"output={tmp_path / 'out'}", f"llm.model={tiny_model}", *overrides]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jobs.synthesize", "--config", WRAP,
                           *[arg for s in sets for arg in ("--set", s)]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


def last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_shipped_recipe_runs_on_two_cpus_with_its_own_sampling(tmp_path, tiny_model):
    done, seconds = synthesize(tmp_path, tiny_model, "llm.device=cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nrephrase-wrap on vLLM CPU, Ray defaults: {seconds:.0f} s")
    out = tmp_path / "out"
    rows = pads.dataset(str(out), format="parquet").to_table().to_pylist()
    rows += pads.dataset(str(out / "_rejected"), format="parquet").to_table().to_pylist()
    synthetic = sorted(r["id"] for r in rows if r["synth_task"])
    assert synthetic == sorted(f"{d}:{p}" for d in "abc" for p in ("wrap_easy", "wrap_medium", "wrap_hard", "wrap_qa"))
    assert sorted(r["id"] for r in rows if not r["synth_task"]) == ["a", "b", "c"]
    assert all(r["tokens_out"] > 0 and r["synth_seed"] == 0 for r in rows if r["synth_task"])
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["failed"] == [] and stats["shards"] == 2 and sum(stats["outputs"].values()) == 12
    progress = [line for line in done.stderr.splitlines() if " requests, " in line]
    print(progress[-1])
    assert progress[-1].split(" ", 2)[2].startswith("progress generate: 12/12 requests, 2 of 2 shards, ")
    noise = ("Triton", "Token authentication is enabled", "No cloud storage mirror", "Progress bars disabled",
             "logging_progress", "Running Dataset", "Deprecat")  # notices of every run, not problems of this one
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in noise)]


def test_a_kv_cache_the_machine_cannot_hold_stops_at_start_naming_the_setting(tmp_path, tiny_model):
    done, seconds = synthesize(tmp_path, tiny_model, "llm.device=cpu", "llm.cpu_kv_cache_gb=100000", timeout=120)
    print(f"\nreported after {seconds:.1f} s")
    assert done.returncode == 2
    assert re.fullmatch(r"error: llm\.cpu_kv_cache_gb: the CPU engine needs 100002\.0 GiB \(KV cache 100000 GiB, "
                        r"the model's weights 0\.0 GiB, the engine about 2 GiB\) and this machine has [\d.]+ GiB "
                        r"available: lower llm\.cpu_kv_cache_gb, or free memory", last_line(done)), last_line(done)
    assert "Ray instance" not in done.stderr and not (tmp_path / "out").exists()  # checked before Ray starts


def test_no_gpu_stops_at_once_naming_the_setting(tmp_path, tiny_model):
    done, seconds = synthesize(tmp_path, tiny_model, timeout=120)  # the recipe's device: gpu, on a CPU machine
    print(f"\nno GPU reported after {seconds:.1f} s")
    assert done.returncode == 2
    assert last_line(done) == (
        "error: 2 shard(s) not finished: llm.device: gpu needs 1 GPU(s) (llm.replicas x tensor_parallel_size x "
        "pipeline_parallel_size) and the cluster has 0: add GPU nodes, or set llm.device=cpu to run on vLLM's CPU "
        "build")
    assert [f["shard"] for f in json.loads((tmp_path / "out" / "_stats.json").read_text())["failed"]] == [
        "CC-MAIN-2024-22/s0", "CC-MAIN-2024-22/s1"]


# Chunked prefill with a small token budget puts vLLM's CPU build on its failing path (a seeded
# sampler cannot be rewound), so every engine replica dies on the first long prompt. The replicas run eager
# (llm.enforce_eager, a user setting): what is tested is how a dying engine is reported, not torch.compile's
# warm-up before each of the two starts (the shipped-recipe test above runs the compiled engine).
CRASH_LOOP = ("llm.max_restarts=1", "llm.engine_kwargs={enable_chunked_prefill: true, max_num_batched_tokens: 128}",
              "llm.enforce_eager=true")


@pytest.mark.slow
@pytest.mark.parametrize("overrides, reason", [
    (CRASH_LOOP, "an engine replica died 2 time(s) (llm.max_restarts=1): RuntimeError: CPU Generator does not use "
                 "offset"),  # the VllmWorker's own error, not the EngineCore's pointer to it
    (("ray.no_progress_timeout_s=3",), "no progress for 3 s (ray.no_progress_timeout_s)"),
], ids=["engine_keeps_dying", "no_progress"])
def test_a_run_that_cannot_finish_stops_with_one_line(tmp_path, tiny_model, overrides, reason):
    done, seconds = synthesize(tmp_path, tiny_model, "llm.device=cpu", *overrides)
    print(f"\nreported after {seconds:.0f} s")
    assert done.returncode == 2
    assert last_line(done) == f"error: 2 shard(s) not finished: {reason}"
