"""Hostile conditions while jobs run, through the user's command: a re-run without one of its input shards,
a driver killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.schema import conform, output_schema
from tests.conftest import ROOT, write_warc
from tests.waiting import GENEROUS_S, wait_until

CRAWL = "CC-MAIN-2024-22"


def job(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | (env or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=GENEROUS_S)


def output_rows(out: Path) -> int:
    """Rows in every document file of a dedup output (its ``_duplicates`` and ``_stats.json`` aside)."""
    files = [p for p in out.rglob("*.parquet") if not any(part.startswith("_") for part in p.relative_to(out).parts)]
    return sum(pq.read_metadata(f).num_rows for f in files)


def test_a_dedup_rerun_without_a_shard_leaves_what_its_stats_count(tmp_path, real_texts):
    """Language folders (``<language>/<crawl>/<shard>.parquet``, as curation's by_language writes): 4 shards, 2
    of them each holding an exact copy of a document in another; the re-run without a shard deletes its file."""
    src, out = tmp_path / "filter", tmp_path / "dedup"
    pages = [t for t in real_texts if len(t.split()) >= 100][:12]
    texts = {"eng_Latn": pages[:6], "deu_Latn": pages[6:]}
    schema = output_schema({})
    for language, docs in texts.items():
        half = len(docs) // 2
        for shard, rows in (("s0", docs[:half]), ("s1", docs[half:] + docs[:1])):  # s1 repeats s0's first
            path = src / language / CRAWL / f"{language}-{shard}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist([dict(id=f"{language}-{shard}-{i}", text=t, language=language)
                                          for i, t in enumerate(rows)])
            pq.write_table(conform(table, schema), path)
    args = ["--config", "jobs/recipes/dedup.yaml", "--set", f"input={src}", "--set", f"output={out}",
            "--set", "spark.driver_memory=1g", "--set", "spark.shuffle_partitions=4"]
    first = job("jobs.dedup", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    stats = json.loads((out / "_stats.json").read_text())
    total = len(texts["eng_Latn"]) + len(texts["deu_Latn"]) + 2
    assert (stats["input"], stats["kept"], output_rows(out)) == (total, total - 2, total - 2)

    (src / "deu_Latn" / CRAWL / "deu_Latn-s0.parquet").unlink()
    again = job("jobs.dedup", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    stats = json.loads((out / "_stats.json").read_text())
    left = len(texts["eng_Latn"]) + len(texts["deu_Latn"]) - len(texts["deu_Latn"]) // 2 + 2
    assert (stats["input"], stats["kept"], output_rows(out)) == (left, left - 1, left - 1)
    assert not (out / "deu_Latn" / CRAWL / "deu_Latn-s0.parquet").exists()


def session_processes(ray_tmp: str) -> dict[int, str]:
    """``{pid: command}`` of the processes whose environment names ``ray_tmp`` as RAY_TMPDIR: the job's driver
    and everything it started (Ray's processes, its workers, their children), and no one else's."""
    marker, found = f"RAY_TMPDIR={ray_tmp}".encode(), {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found[int(name)] = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


KILLED_BOUND_S = 20


def test_a_killed_curation_driver_takes_its_ray_and_workers_with_it(tmp_path):
    """A page nested 20,000 deep takes resiliparse over half a minute: each worker's extraction child is on one
    (the worker would stop it at extract.timeout_s) when the driver is killed with SIGKILL, so Ray's own exit
    hook never runs and the orphaned children would extract on long after their workers are gone."""
    nested = "<div>" * 20000 + "<p>A page of text that takes the extractor a while. </p>" * 20 + "</div>" * 20000
    for shard in ("a", "b"):
        write_warc(tmp_path / f"{shard}.warc.gz", [{"url": f"https://{shard}-town-history.org/{i}",
                                                    "body": f"<html><body>{nested}</body></html>".encode()}
                                                   for i in range(3)])
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below
    driver = subprocess.Popen([sys.executable, "-m", "jobs.curate", "--config", "jobs/recipes/fineweb.yaml",
                               "--set", f"input.paths=[{tmp_path}/*.warc.gz]", "--set", "ray.num_cpus=2",
                               "--set", f"output.root={tmp_path / 'out'}"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: sum("operators.extract.sandbox" in c for c in session_processes(ray_tmp).values()) == 2,
                   f"both workers extracting (driver's output: {tmp_path / 'driver.log'})", every_s=0.5,
                   alive=lambda: driver.poll() is None)
        time.sleep(2)  # into their batch
        driver.kill()
        driver.wait()
        started = time.monotonic()
        # 0.8 s on a quiet machine; the bound leaves room for a loaded one, and is far below the minutes the
        # orphaned extraction children ran before (three such pages each)
        while (left := session_processes(ray_tmp)) and time.monotonic() - started < KILLED_BOUND_S:
            time.sleep(0.05)
        assert not left, f"still running {KILLED_BOUND_S} s after the driver was killed: {left}"
        print(f"every process of the killed job gone {time.monotonic() - started:.1f} s after the driver")
    finally:
        driver.kill()
        log.close()
        for pid in session_processes(ray_tmp):  # what a failed run left: this test's own processes only
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 400 KiB file system (tmpfs; mounting needs root), grown to 20 MiB by ``grow()``."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("a small disk needs mount -t tmpfs (root)")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,size=20m", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_the_shard_by_name_and_the_others_finish(small_disk, shared_data):
    """One Ray worker, so the shards run one after the other: the large shard's output does not fit in 400 KiB,
    the small one's does once the large one's staged files are gone; after the disk grows a re-run finishes."""
    disk, grow = small_disk
    root = disk / "out"
    args = ["--config", "jobs/recipes/fineweb.yaml", "--set", "ray.num_cpus=1", "--set", f"output.root={root}",
            "--set", f"input.paths=[{shared_data / 'real-pages-dev.warc.gz'}, {ROOT / 'data' / 'whirlwind.warc.gz'}]"]
    done = job("jobs.curate", *args)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (2, "error: 1 shard(s) failed: real-pages-dev.warc")
    assert f"shard real-pages-dev.warc failed: no space left on {root}\n" in done.stderr
    files = sorted(str(p.relative_to(root / "fineweb")) for p in root.rglob("*")
                   if p.is_file() and p.name != "._lock.json.lock")  # the run lock's own lock file, if left
    assert files == ["filter/CC-MAIN-2024-22/whirlwind.warc.parquet",  # no staged file
                     "filter/_ledger/whirlwind.warc.json", "filter/_stats.json",
                     "rejected/CC-MAIN-2024-22/whirlwind.warc.parquet"]
    assert json.loads((root / "fineweb" / "filter" / "_stats.json").read_text())["failed"] == [
        {"shard": "real-pages-dev.warc", "error": f"no space left on {root}"}]

    grow()
    again = job("jobs.curate", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.splitlines()[-1])["shards"] == 2
