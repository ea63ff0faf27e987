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


PLANTED = ("Which planet of the solar system has the largest number of known moons orbiting it according to the "
           "latest survey of astronomers")


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
    pages = [{"url": f"https://town{i}.example.org/", "body": html_page(f"T{i}", rng.sample(ENGLISH, 4) + (
        [PLANTED] if i in (5, 17) else []))} for i in range(24)]
    write_warc(home / "data" / "crawl.warc.gz", pages)
    (home / "data" / "evals").mkdir()
    question, answer = PLANTED.split(" ", 12)[:12], PLANTED.split(" ", 12)[12]
    (home / "data" / "evals" / "quiz.jsonl").write_text(json.dumps({"q": " ".join(question), "a": answer}) + "\n")
    env = {**user_env(), "PYTHONPATH": str(ROOT)}
    decontaminate = ('stages.decontaminate={recipe: jobs/recipes/decontaminate.yaml, '
                     'set: ["evals=[{name: quiz, path: data/evals/quiz.jsonl, fields: [q, a]}]"]}')
    done = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--config", "jobs/recipes/mixture-cpu.yaml",
                           "--set", decontaminate], cwd=home, env=env, capture_output=True, text=True,
                          timeout=GENEROUS_S)
    assert done.returncode == 0, done.stderr[-4000:]

    base = home / "output" / "mixture-cpu"
    result = json.loads((base / "mixture.json").read_text())
    # decontaminated: the quality output's pages holding the planted passage are gone, none other
    before = pads.dataset(str(base / "quality"), format="parquet").to_table()
    planted = sum(PLANTED in text for text in before.column("text").to_pylist())
    quality = pads.dataset(str(base / "decontam" / "quality"), format="parquet").to_table()
    assert planted > 0 and quality.num_rows == before.num_rows - planted
    assert not any(PLANTED in text for text in quality.column("text").to_pylist())
    assert json.loads((base / "decontam" / "quality" / "_stats.json").read_text())["benchmarks"]["quiz"][
        "documents"] == planted
    assert result["sources"][0].endswith("decontam/quality")
    # exported: every document of the mixture once (no weights, no rehydration), Megatron shards
    exported = json.loads((base / "export" / "manifest.json").read_text())
    assert exported["documents"] == result["documents"] and exported["format"] == "megatron"
    assert all((base / "export" / name).exists() for shard in exported["shards"] for name in shard["files"])
    buckets = before.column("quality_bucket").to_pylist()  # what synthesis routed on
    assert result["kinds"]["real"]["documents"] == quality.num_rows
    assert before.num_rows == json.loads((base / "dedup" / "_stats.json").read_text())["kept"] > 0
    answered = {}
    for name, kind in (("rephrase-nemotron", "rephrased"), ("rewire", "rewritten"), ("tpt", "thought")):
        stats = json.loads((base / "synth" / name / "_stats.json").read_text())
        assert stats["failed"] == [] and stats["model"] == "models/llm"
        answered[kind] = sum(stats["outputs"].values())
        # a thought row holds its source page, so a planted page's TPT row is rightly decontaminated too
        cleaned = json.loads((base / "decontam" / "synth" / name / "_stats.json").read_text())
        assert cleaned["documents"] == stats["rows"].get("data", 0)
        assert result["kinds"].get(kind, {"documents": 0})["documents"] == cleaned["kept"]
    assert answered["rephrased"] == 4 * sum(b >= 18 for b in buckets)  # four knowledge prompts per high document
    assert answered["rewritten"] == sum(7 <= b <= 17 for b in buckets)
    assert answered["thought"] <= sum(b >= 12 for b in buckets)
    assert sum(answered.values()) > 0
    # per language: every document counted once; no rehydration in this mixture, so the tokens stay as they are
    assert sum(entry["documents"] for entry in result["languages"].values()) == result["documents"]
    assert result["languages"]["eng_Latn"]["documents"] >= quality.num_rows
    assert result["tokens_rehydrated"] == result["tokens"] > 0
