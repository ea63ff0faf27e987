"""One run per output: a live holder refuses a second run by name; a gone one is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV
from operators.io.run_lock import Locked, RunLock
from operators.io.storage import Storage
from tests.conftest import ROOT, write_warc
from tests.scripted_mixture import stage_sets
from tests.test_curate_faults import pages
from tests.waiting import GENEROUS_S

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")


def plant(path, **holder) -> None:
    doc = {"host": socket.gethostname(), "pid": os.getpid(), "ttl_s": 120, "started": "earlier",
           "heartbeat": time.time(), "lease": None, "attempt": 0, **holder}
    path.write_text(json.dumps(doc))


def test_a_live_holder_refuses_by_name_and_the_lock_is_released(tmp_path):
    uri = tmp_path / "_lock.json"
    with RunLock(Storage(), str(tmp_path)):
        held = json.loads(uri.read_text())
        assert held["pid"] == os.getpid()
        with pytest.raises(Locked, match=f"output {tmp_path} is being written by another run: pid {os.getpid()} on "):
            RunLock(Storage(), str(tmp_path)).__enter__()
    assert not uri.exists()


def test_a_dead_process_on_this_host_and_a_silent_remote_holder_are_taken_over(tmp_path):
    uri = tmp_path / "_lock.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    plant(uri, pid=dead.pid)
    with RunLock(Storage(), str(tmp_path)):
        assert json.loads(uri.read_text())["pid"] == os.getpid()
    plant(uri, host="elsewhere", pid=1, heartbeat=time.time() - 10)
    with pytest.raises(Locked, match="pid 1 on elsewhere"):
        RunLock(Storage(), str(tmp_path)).__enter__()
    plant(uri, host="elsewhere", pid=1, heartbeat=time.time() - 121)
    with RunLock(Storage(), str(tmp_path)):
        assert json.loads(uri.read_text())["host"] == socket.gethostname()


def test_a_newer_attempt_of_the_same_lease_takes_over(tmp_path, monkeypatch):
    uri = tmp_path / "_lock.json"
    plant(uri, host="elsewhere", pid=1, lease="s3://b/registry/run.json", attempt=1)
    monkeypatch.setenv(LEASE_ENV, "s3://b/registry/run.json")
    monkeypatch.setenv(ATTEMPT_ENV, "2")
    with RunLock(Storage(), str(tmp_path)):
        assert json.loads(uri.read_text())["attempt"] == 2
    plant(uri, host="elsewhere", pid=1, lease="s3://b/registry/run.json", attempt=3)
    with pytest.raises(Locked):
        RunLock(Storage(), str(tmp_path)).__enter__()


@pytest.mark.slow
def test_a_second_curation_run_on_the_same_output_is_refused_naming_the_first(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(8):
        write_warc(tmp_path / "in" / f"s{i}.warc.gz", pages(60, f"s{i}"))
    command = [sys.executable, "-m", "jobs.curate", "--config", RECIPE, "--set", f"input.paths={tmp_path}/in/*.warc.gz",
               "--set", f"output.root={tmp_path}/out", "--set", "ray.workers=1"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "out" / "fineweb" / "filter" / "_lock.json"
    while not lock.exists():
        assert first.poll() is None, "the first run ended before the second started"
        time.sleep(0.05)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=GENEROUS_S)
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"error: output {tmp_path}/out/fineweb/filter is being written by another run: pid {first.pid} on ")
    assert first.wait(timeout=GENEROUS_S) == 0 and not lock.exists()
    assert len(list((tmp_path / "out" / "fineweb" / "filter" / "_ledger").iterdir())) == 8


STAGES = {  # (module, recipe model, shipped recipe, the settings that point it at tmp_path/in -> tmp_path/out)
    "dedup": ("jobs.dedup", "DedupRecipe", "dedup.yaml", ["input={in}", "output={out}"]),
    "classify": ("jobs.classify", "QualityRecipe", "quality.yaml", ["input={in}", "output={out}"]),
    "rate": ("jobs.classify", "QualityRecipe", "quality-llm.yaml", ["input={in}", "output={out}"]),
    "synthesize": ("jobs.synthesize", "SynthRecipe", "rephrase-wrap.yaml",
                   ["input={in}", "output={out}", "llm.engine=openai", "llm.model=served", "tokenizer=null"]),
    "pipeline": ("jobs.pipeline", "MixtureRecipe", "mixture.yaml", ["input=[{in}/*.warc.gz]", "root={root}",
                                                                    "name=out"]),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_refuses_an_output_another_run_holds_before_touching_it(tmp_path, stage, request):
    import importlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.common.recipe import load_model

    module, model, shipped, sets = STAGES[stage]
    job = importlib.import_module(module)
    out = tmp_path / "out"
    (tmp_path / "in").mkdir()  # an input each job's start-up checks accept
    pq.write_table(pa.table({"id": ["d0"], "text": ["some words"]}), tmp_path / "in" / "s0.parquet")
    write_warc(tmp_path / "in" / "s0.warc.gz", pages(1, "s0"))
    sets = [s.format(**{"in": tmp_path / "in", "out": out, "root": tmp_path}) for s in sets]
    if stage == "pipeline":  # every stage on the CPU with local models, so that its start-up checks pass here
        sets += stage_sets("http://127.0.0.1:9/v1", request.getfixturevalue("tiny_bert"),
                           request.getfixturevalue("tiny_fasttext"))
    recipe = load_model(getattr(job, model), str(ROOT / "jobs" / "recipes" / shipped), sets)
    staging = f".s0.parquet.tmp-{'0' * 32}"  # what the holder is writing: a sweep would delete it
    out.mkdir()
    (out / staging).write_bytes(b"PAR1 half")
    with RunLock(Storage(), str(out)):
        with pytest.raises(Locked, match=f"^output {out} is being written by another run: pid {os.getpid()} on "):
            job.run(recipe)
        assert sorted(p.name for p in out.iterdir()) == [staging, "_lock.json"]
