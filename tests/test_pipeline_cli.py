"""The mixture as a user runs it on a machine without a GPU: ``make pipeline`` stops before its first stage
naming what is missing, and the CPU mixture runs every stage, with Ray's defaults, from local models."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pyarrow.dataset as pads
import pytest

from tests.conftest import ENGLISH, ROOT, html_page, write_warc
from tests.test_first_run import make
from tests.waiting import GENEROUS_S


def user_env() -> dict[str, str]:
    """The user's environment: no Ray address, nothing vLLM-specific, no hub (the session's caches)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VLLM_CPU_KVCACHE_SPACE")}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


def test_make_pipeline_on_a_cpu_machine_stops_before_its_first_stage_naming_the_stage(tmp_path):
    done = make("pipeline", f"OUTPUT={tmp_path / 'out'}")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-2] == (
        "error: stages.quality (jobs/recipes/quality.yaml): classifiers: the transformer classifiers need 3 GPU(s) "
        "(replicas x num_gpus) and the cluster has 0: add GPU nodes, or set device: cpu on them; on a machine without "
        "GPUs run the CPU mixture (jobs/recipes/mixture-cpu.yaml, README: End-to-end mixture)")
    assert not (tmp_path / "out").exists()  # no stage ran, nothing written


def test_a_missing_model_of_a_later_stage_stops_the_cpu_mixture_at_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--config", "jobs/recipes/mixture-cpu.yaml",
                           "--set", f"root={tmp_path / 'out'}"], cwd=ROOT, env=user_env(),
                          capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert done.stderr.strip().splitlines()[-1] == (
        "error: stages.quality (jobs/recipes/quality-cpu.yaml): classifiers[0].model: models/dclm-fasttext.bin is no "
        "local path, and not in the local Hugging Face cache (HF_HUB_OFFLINE is set)")


@pytest.mark.slow
def test_the_cpu_mixture_runs_every_stage_from_local_models(tmp_path, tiny_model, tiny_bert, tiny_fasttext):
    """The README's CPU route in a user's folder: the checkout's jobs/, the user's data/ and models/."""
    home = tmp_path / "work"
    (home / "data").mkdir(parents=True)
    (home / "models").mkdir()
    (home / "jobs").symlink_to(ROOT / "jobs")
    for name, target in (("llm", tiny_model), ("fineweb-edu-classifier", tiny_bert), ("dclm-fasttext.bin",
                                                                                         tiny_fasttext)):
        (home / "models" / name).symlink_to(target)
    rng = random.Random(3)
    pages = [{"url": f"https://town{i}.example.org/", "body": html_page(f"T{i}", rng.sample(ENGLISH, 4))}
             for i in range(24)]
    write_warc(home / "data" / "crawl.warc.gz", pages)
    env = {**user_env(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--config", "jobs/recipes/mixture-cpu.yaml"],
                          cwd=home, env=env, capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 0, done.stderr[-4000:]

    base = home / "output" / "mixture-cpu"
    result = json.loads((base / "mixture.json").read_text())
    quality = pads.dataset(str(base / "quality"), format="parquet").to_table()
    buckets = quality.column("quality_bucket").to_pylist()
    assert result["kinds"]["real"]["documents"] == quality.num_rows == json.loads(
        (base / "dedup" / "_stats.json").read_text())["kept"] > 0
    answered = {}
    for name, kind in (("rephrase-nemotron", "rephrased"), ("rewire", "rewritten"), ("tpt", "thought")):
        stats = json.loads((base / "synth" / name / "_stats.json").read_text())
        assert stats["failed"] == [] and stats["model"] == "models/llm"
        answered[kind] = sum(stats["outputs"].values())
        assert result["kinds"].get(kind, {"documents": 0})["documents"] == stats["rows"].get("data", 0)
    assert answered["rephrased"] == 4 * sum(b >= 18 for b in buckets)  # four knowledge prompts per high document
    assert answered["rewritten"] == sum(7 <= b <= 17 for b in buckets)
    assert answered["thought"] <= sum(b >= 12 for b in buckets)
    assert sum(answered.values()) > 0
    # per language: every document counted once; no rehydration in this mixture, so the tokens stay as they are
    assert sum(entry["documents"] for entry in result["languages"].values()) == result["documents"]
    assert result["languages"]["eng_Latn"]["documents"] >= quality.num_rows
    assert result["tokens_rehydrated"] == result["tokens"] > 0
