"""Hostile input at start-up, through the user's command: bad YAML, a folder among the inputs, a step listed
twice, synthesis settings no engine could run. Each stops in one line (exit 2) before Ray starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.waiting import GENEROUS_S

FINEWEB = "jobs/recipes/fineweb.yaml"
NEMOTRON = "jobs/recipes/rephrase-nemotron.yaml"


def stops_at_start(tmp_path, module: str, *args: str, env: dict | None = None) -> str:
    """Run ``python -m <module> *args`` as a user does; assert it exits 2 with one stderr line, nothing on
    stdout, no Ray started and no output written; return the line."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # a local Ray makes its session folder here as it starts
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp} | (env or {})
    try:
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=GENEROUS_S)
        assert (done.returncode, done.stdout, len(done.stderr.splitlines())) == (2, "", 1), done.stderr[-3000:]
        assert os.listdir(ray_tmp) == [] and not (tmp_path / "out").exists()
        return done.stderr.strip()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_recipe_that_is_not_yaml_is_named_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npipeline:\n  - extract: {engine: [resiliparse}\n")
    assert stops_at_start(tmp_path, "jobs.curate", "--config", str(bad)) == (
        f"error: --config: {bad} is not valid YAML (line 3, column 35): expected ',' or ']', but got '}}'")


@pytest.mark.parametrize("module, recipe, key", [
    ("jobs.curate", FINEWEB, "input.paths"),
    ("jobs", FINEWEB, "input.paths"),
    ("jobs.pipeline", "jobs/recipes/mixture-cpu.yaml", "root"),
])
def test_a_set_value_that_is_not_yaml_is_named_by_its_key(tmp_path, module, recipe, key):
    line = stops_at_start(tmp_path, module, "--config", recipe, "--set", f"{key}=[1")
    assert line == f"error: --set {key}: not valid YAML (line 1, column 3): expected ',' or ']', but got '<stream end>'"


def test_a_pipeline_stage_set_value_that_is_not_yaml_names_the_stage(tmp_path):
    line = stops_at_start(tmp_path, "jobs.pipeline", "--config", "jobs/recipes/mixture-cpu.yaml",
                          "--set", f"root={tmp_path / 'out'}", "--set", 'stages.curate.set=["input.limit=[1"]')
    assert line == ("error: stages.curate (jobs/recipes/fineweb.yaml): --set input.limit: not valid YAML "
                    "(line 1, column 3): expected ',' or ']', but got '<stream end>'")


def test_a_glob_that_matches_a_folder_is_named_at_start(tmp_path):
    (tmp_path / "in" / "more").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "sample-pages.warc.gz", tmp_path / "in")
    line = stops_at_start(tmp_path, "jobs.curate", "--config", FINEWEB, "--set", f"input.paths=[{tmp_path}/in/*]",
                          "--set", f"output.root={tmp_path / 'out'}")
    assert line == (f"error: input.paths: '{tmp_path}/in/*' matches the folder {tmp_path}/in/more; give a glob "
                    f"that matches only files, like '{tmp_path}/in/*.warc.gz'")


def test_a_step_listed_twice_is_refused_by_name(tmp_path):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text((ROOT / FINEWEB).read_text().replace("  - fineweb_quality: {}",
                                                           "  - gopher_quality: {}\n  - fineweb_quality: {}"))
    line = stops_at_start(tmp_path, "jobs.curate", "--config", str(recipe), "--set", f"output.root={tmp_path / 'out'}")
    assert line == ("error: pipeline[6]: 'gopher_quality' is already step 4; a step runs once "
                    "(its counts, and --set pipeline.<name>, are by name)")


@pytest.fixture
def synth_input(tmp_path):
    (tmp_path / "in").mkdir()
    table = pa.table({"id": ["a"], "text": ["Some text."], "quality_bucket": [20]})
    pq.write_table(table, tmp_path / "in" / "s.parquet")
    return ["--config", NEMOTRON, "--set", f"input={tmp_path / 'in'}", "--set", f"output={tmp_path / 'out'}"]


@pytest.mark.parametrize("setting, line", [
    ("llm.dtype=nonsense",
     "error: llm.dtype: Input should be 'auto', 'half', 'float16', 'bfloat16', 'float' or 'float32'"),
    ("llm.endpoint.concurrency=0", "error: llm.endpoint.concurrency: Input should be greater than or equal to 1"),
    ("llm.sampling.max_tokens=4096", "error: llm.sampling.max_tokens: 4096 leaves no room for a prompt in the "
                                     "model's context of 4096 tokens (max_position_embeddings in {model}/config.json)"),
    ("llm.max_model_len=1024", "error: llm.sampling.max_tokens: 2048 leaves no room for a prompt in the "
                               "model's context of 1024 tokens (llm.max_model_len)"),
])
def test_synthesis_settings_no_engine_could_run_are_named_at_start(tmp_path, synth_input, tiny_model, setting, line):
    args = [*synth_input, "--set", f"llm.model={tiny_model}", "--set", "llm.device=cpu", "--set", setting]
    assert stops_at_start(tmp_path, "jobs.synthesize", *args) == line.format(model=tiny_model)


def test_a_missing_s3_tokenizer_is_named_at_start(tmp_path, synth_input, tiny_model, s3_server, s3_client):
    s3_client.create_bucket(Bucket="hostile-tokenizers")
    args = [*synth_input, "--set", f"llm.model={tiny_model}", "--set", "llm.device=cpu",
            "--set", f"storage.endpoint_url={s3_server}", "--set", "tokenizer=s3://hostile-tokenizers/none"]
    assert stops_at_start(tmp_path, "jobs.synthesize", *args) == (
        "error: tokenizer: s3://hostile-tokenizers/none does not exist")
