"""The curation job on hostile input: nothing lost silently, nothing written outside the output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from jobs.curate import run
from jobs.curate.recipe import load_recipe
from tests.conftest import ENGLISH, ROOT, html_page, write_warc
from tests.faults import DroppingProxy, FaultyHttpProxy, members
from tests.waiting import GENEROUS_S

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")


def pages(n: int, tag: str = "p") -> list[dict]:
    return [{"url": f"https://{tag}.example.org/{i}", "body": html_page(f"Page {i}", ENGLISH)} for i in range(n)]


def recipe(tmp_path: Path, inputs: str, *overrides: str):
    return load_recipe(RECIPE, [f"input.paths={inputs}", f"output.root={tmp_path}/out", *overrides])


def outputs(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    """(kept rows, rejected rows) of the run, read as a dataset reader sees them."""
    base = tmp_path / "out" / "fineweb"
    kept = pads.dataset(str(base / "filter"), format="parquet").to_table().to_pylist()
    rejected = (pads.dataset(str(base / "rejected"), format="parquet").to_table().to_pylist()
                if (base / "rejected").exists() else [])
    return kept, rejected


def stats(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "fineweb" / "filter" / "_stats.json").read_text())


def ledger(tmp_path: Path, shard: str) -> Path:
    return tmp_path / "out" / "fineweb" / "filter" / "_ledger" / f"{shard}.json"


@pytest.mark.slow
def test_a_damaged_shard_loses_one_record_and_a_non_warc_fails_alone(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    write_warc(tmp_path / "in" / "good.warc.gz", pages(5, "good"))
    damaged = write_warc(tmp_path / "in" / "damaged.warc.gz", pages(20, "damaged"))
    data = bytearray(damaged.read_bytes())
    start, end = members(bytes(data))[2 + 2 * 7]  # the 8th response
    data[(start + end) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "in" / "junk.warc.gz").write_bytes(os.urandom(4096))

    with pytest.raises(RuntimeError, match="1 shard\\(s\\) failed: junk.warc"):
        run(recipe(tmp_path, f"{tmp_path}/in/*.warc.gz"))

    written = stats(tmp_path)
    assert [f["shard"] for f in written["failed"]] == ["junk.warc"]
    assert "junk.warc.gz: not a WARC/WET file" in written["failed"][0]["error"]
    assert not ledger(tmp_path, "junk.warc").exists()
    entry = json.loads(ledger(tmp_path, "damaged.warc").read_text())
    assert entry["read"] == {"read.response": 19, "read.corrupt_record": 1}
    assert [p["offset"] for p in entry["problems"]] == [start]
    kept, rejected = outputs(tmp_path)
    urls = sorted(r["url"] for r in kept + rejected)
    assert urls == sorted([p["url"] for p in pages(5, "good")] + [p["url"] for i, p in enumerate(pages(20, "damaged"))
                                                                   if i != 7])
    assert written["read"]["read.corrupt_record"] == 1


@pytest.mark.slow
def test_a_dropped_connection_is_resumed_and_an_outage_fails_then_reruns(tmp_path, ray_local, s3_server, s3_client):
    s3_client.create_bucket(Bucket="flaky")
    source = write_warc(tmp_path / "big.warc.gz", pages(400, "big"))
    s3_client.upload_file(str(source), "flaky", "in/big.warc.gz")
    size = source.stat().st_size

    proxy = DroppingProxy(s3_server, cut_at=size // 2, down_after=True)
    overrides = [f"storage.endpoint_url={proxy.url}", "storage.retries=2", "storage.retry_backoff_s=0.05"]
    try:
        with pytest.raises(RuntimeError, match="big.warc"):
            run(recipe(tmp_path, "s3://flaky/in/*.warc.gz", *overrides))
    finally:
        proxy.close()
    assert "read failed at byte" in stats(tmp_path)["failed"][0]["error"]
    assert not ledger(tmp_path, "big.warc").exists()

    proxy = DroppingProxy(s3_server, cut_at=size // 2)  # the outage is over; one more reset on the way
    try:
        result = run(recipe(tmp_path, "s3://flaky/in/*.warc.gz", f"storage.endpoint_url={proxy.url}",
                            "storage.retry_backoff_s=0.05"))
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert result["read"] == {"read.response": 400, "read.retries": 1} and result["failed"] == []
    kept, rejected = outputs(tmp_path)
    assert len(kept) + len(rejected) == 400 and len({r["id"] for r in kept + rejected}) == 400


@pytest.mark.slow
def test_a_shard_whose_input_changed_is_redone(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    whole = write_warc(tmp_path / "whole.warc.gz", pages(30)).read_bytes()
    shard = tmp_path / "in" / "x.warc.gz"
    shard.write_bytes(whole[: len(whole) // 2])
    first = run(recipe(tmp_path, str(shard)))
    assert first["read"]["read.truncated"] == 1 and first["read"]["read.response"] < 30

    shard.write_bytes(whole)  # the whole file replaces the truncated one
    second = run(recipe(tmp_path, str(shard)))
    assert second["read"] == {"read.response": 30}
    entry = json.loads(ledger(tmp_path, "x.warc").read_text())
    assert entry["input"]["size"] == len(whole)
    kept, rejected = outputs(tmp_path)
    assert sorted(r["url"] for r in kept + rejected) == sorted(p["url"] for p in pages(30))

    done_at = ledger(tmp_path, "x.warc").stat().st_mtime_ns
    third = run(recipe(tmp_path, str(shard)))  # unchanged: nothing to redo
    assert ledger(tmp_path, "x.warc").stat().st_mtime_ns == done_at and third["read"] == second["read"]


@pytest.mark.slow
def test_hostile_crawl_names_and_file_names_stay_inside_the_output(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    hostile = {"escape.warc.gz": "../../../escaped", "nested.warc.gz": "a/b", "dots.warc.gz": "..",
               "_hidden.warc.gz": "CC-MAIN-2024-22", "with space.warc.gz": "CC-MAIN-2024-22"}
    for i, (name, crawl) in enumerate(hostile.items()):
        write_warc(tmp_path / "in" / name, pages(2, f"h{i}"), crawl=crawl)
    for _ in range(2):  # the second run must not write anything either
        run(recipe(tmp_path, f"{tmp_path}/in/*.warc.gz"))
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                     and not p.relative_to(tmp_path).as_posix().startswith("in/"))
    assert all(w.startswith("out/fineweb/") for w in written), written
    folders = {Path(w).parent.as_posix() for w in written if w.endswith(".parquet")}
    assert {f.rsplit("/", 1)[0] for f in folders} <= {"out/fineweb/filter", "out/fineweb/rejected"}
    assert {f.rsplit("/", 1)[1] for f in folders} == {"unknown", "CC-MAIN-2024-22"}
    names = {Path(w).name for w in written if "/filter/" in w and w.endswith(".parquet")}
    assert names == {"escape.warc.parquet", "nested.warc.parquet", "dots.warc.parquet", "hidden.warc.parquet",
                     "with_space.warc.parquet"}
    kept, rejected = outputs(tmp_path)
    assert len(kept) + len(rejected) == 10  # every row visible to a dataset reader


@pytest.mark.slow
def test_ids_are_unique_across_copies_and_repeated_record_ids(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    original = write_warc(tmp_path / "in" / "a.warc.gz", pages(6)).read_bytes()
    (tmp_path / "in" / "copy-of-a.warc.gz").write_bytes(original)
    start, end = members(original)[2]  # the first response, once more at the end of a third file
    (tmp_path / "in" / "repeats.warc.gz").write_bytes(original + original[start:end])
    result = run(recipe(tmp_path, f"{tmp_path}/in/*.warc.gz"))
    kept, rejected = outputs(tmp_path)
    ids = [r["id"] for r in kept + rejected]
    assert len(ids) == 6 + 6 + 7 == len(set(ids))
    assert result["read"] == {"read.response": 19, "read.duplicate_record_id": 1}
    assert len({r["warc_record_id"] for r in kept + rejected}) == 6


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pages_that_hang_the_parser_are_timed_out_and_the_rest_survives(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    nested = b"<html><body>" + b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000 + b"</body></html>"
    unclosed = b"<html><body>" + b"<div>" * 600_000 + b"never closed"
    hard = pages(3, "first") + [{"url": "https://nested.example/", "body": nested},
                                {"url": "https://unclosed.example/", "body": unclosed}] + pages(3, "after")
    write_warc(tmp_path / "in" / "a-hard.warc.gz", hard)
    write_warc(tmp_path / "in" / "b-easy.warc.gz", pages(4, "easy"))
    result = run(recipe(tmp_path, f"{tmp_path}/in/*.warc.gz", "ray.workers=1", "pipeline.extract.timeout_s=2"))
    assert result["shards"] == 2 and result["failed"] == []
    assert result["operators"]["extract"]["dropped"] == {"extract.timeout": 2}
    kept, _ = outputs(tmp_path)
    assert sorted(r["url"] for r in kept) == sorted(p["url"] for p in pages(3, "first") + pages(3, "after")
                                                    + pages(4, "easy"))


def test_cli_exits_nonzero_naming_the_shard_that_failed(tmp_path):
    (tmp_path / "in").mkdir()
    write_warc(tmp_path / "in" / "fine.warc.gz", pages(2))
    (tmp_path / "in" / "html.warc.gz").write_bytes(b"<html><body>not a warc</body></html>")
    done = subprocess.run([sys.executable, "-m", "jobs.curate", "--config", RECIPE,
                           "--set", f"input.paths={tmp_path}/in/*.warc.gz", "--set", f"output.root={tmp_path}/out"],
                          cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True,
                          timeout=GENEROUS_S)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: 1 shard(s) failed: html.warc"
    assert ledger(tmp_path, "fine.warc").exists() and not ledger(tmp_path, "html.warc").exists()


@pytest.mark.slow
def test_killed_mid_run_and_restarted_the_output_reads_as_a_clean_run(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(10):
        write_warc(tmp_path / "in" / f"s{i}.warc.gz", pages(60, f"s{i}"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def curate(out: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "jobs.curate", "--config", RECIPE, "--set",
                                 f"input.paths={tmp_path}/in/*.warc.gz", "--set", f"output.root={out}",
                                 "--set", "ray.workers=1"], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    job = curate(f"{tmp_path}/out")
    ledgers = tmp_path / "out" / "fineweb" / "filter" / "_ledger"
    while not (ledgers.exists() and any(ledgers.iterdir())):
        assert job.poll() is None, "the job ended before it could be killed"
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done_before = len(list(ledgers.iterdir()))
    assert done_before < 10
    leftover = tmp_path / "out" / "fineweb" / "filter" / "CC-MAIN-2024-22" / f".s9.warc.parquet.tmp-{'0' * 32}"
    leftover.write_bytes(b"PAR1 half a file")  # what a kill inside a write leaves

    assert curate(f"{tmp_path}/out").wait(timeout=GENEROUS_S) == 0
    assert curate(f"{tmp_path}/clean").wait(timeout=GENEROUS_S) == 0
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
    trees = sorted(p.name for p in (tmp_path / "clean" / "fineweb").iterdir())
    assert sorted(p.name for p in (tmp_path / "out" / "fineweb").iterdir()) == trees
    for tree in trees:
        after_kill = pads.dataset(str(tmp_path / "out" / "fineweb" / tree), format="parquet").to_table()
        clean = pads.dataset(str(tmp_path / "clean" / "fineweb" / tree), format="parquet").to_table()
        assert sorted(after_kill.column("id").to_pylist()) == sorted(clean.column("id").to_pylist())
        assert after_kill.num_rows == len(set(after_kill.column("id").to_pylist()))


def _pids(title: str) -> list[int]:
    """Processes whose command line is ``title`` (what Ray shows for an actor's running task)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().split(b"\0")[0].decode() == title:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_restarted_and_the_shard_redone(tmp_path, ray_local):
    (tmp_path / "in").mkdir()
    for i in range(3):
        write_warc(tmp_path / "in" / f"k{i}.warc.gz", pages(60, f"k{i}"))
    killed: list[int] = []

    def kill_the_first_running_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in _pids("ray::ShardRunner.run"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_first_running_worker)
    killer.start()
    result = run(recipe(tmp_path, f"{tmp_path}/in/*.warc.gz", "ray.workers=1"))
    killer.join()

    assert killed, "no worker was seen running a shard"
    assert result["failed"] == [] and len(result["retried"]) == 1
    assert result["retried"][0]["shard"] in {"k0.warc", "k1.warc", "k2.warc"}
    clean = run(recipe(tmp_path / "clean", f"{tmp_path}/in/*.warc.gz", "ray.workers=1"))
    assert (result["rows"], result["read"]) == (clean["rows"], clean["read"])
    kept, rejected = outputs(tmp_path)
    clean_kept, clean_rejected = outputs(tmp_path / "clean")
    assert sorted(r["id"] for r in kept + rejected) == sorted(r["id"] for r in clean_kept + clean_rejected)
    assert len(kept + rejected) == 180 == len({r["id"] for r in kept + rejected})


@pytest.mark.slow
def test_slow_down_answers_slow_responses_and_a_vanished_input(tmp_path, ray_local, s3_server, s3_client):
    s3_client.create_bucket(Bucket="faulty")
    for name in ("a", "b", "gone"):
        path = write_warc(tmp_path / f"{name}.warc.gz", pages(20, name))
        s3_client.upload_file(str(path), "faulty", f"in/{name}.warc.gz")
    # every 3rd of the first 60 requests answered 503 SlowDown, the rest delayed; "gone" is listed, then 404
    proxy = FaultyHttpProxy(s3_server, faults=60, slow_down_every=3, missing="/in/gone.warc.gz", delay_s=0.05)
    try:
        with pytest.raises(RuntimeError, match=r"1 shard\(s\) failed: gone.warc$"):
            run(recipe(tmp_path, "s3://faulty/in/*.warc.gz", f"storage.endpoint_url={proxy.url}",
                       "output.root=s3://faulty/out"))
    finally:
        proxy.close()

    assert proxy.slow_downs >= 5 and proxy.not_found >= 1
    written = json.loads(s3_client.get_object(Bucket="faulty", Key="out/fineweb/filter/_stats.json")["Body"].read())
    assert [f["shard"] for f in written["failed"]] == ["gone.warc"]
    assert "s3://faulty/in/gone.warc.gz" in written["failed"][0]["error"]
    run(recipe(tmp_path / "clean", f"{tmp_path}/[ab].warc.gz"))
    fs = pafs.S3FileSystem(endpoint_override=s3_server.removeprefix("http://"), scheme="http", region="us-east-1")
    sides = [f"faulty/out/fineweb/{side}" for side in ("filter", "rejected")]
    ids = [i for side in sides if fs.get_file_info(side).type != pafs.FileType.NotFound
           for i in pads.dataset(side, filesystem=fs, format="parquet").to_table().column("id").to_pylist()]
    clean_kept, clean_rejected = outputs(tmp_path / "clean")
    assert sorted(ids) == sorted(r["id"] for r in clean_kept + clean_rejected)
    assert len(ids) == 40


def test_a_finished_shard_whose_input_is_deleted_after_the_listing_stays_finished(tmp_path):
    from operators.io.ledger import to_do
    from operators.io.storage import Storage

    (tmp_path / "a.warc.gz").write_bytes(b"a")
    storage, ledger = Storage(), tmp_path / "a.json"
    ledger.write_text(json.dumps({"input": storage.stat(str(tmp_path / "a.warc.gz")), "outputs": {}}))
    (tmp_path / "a.warc.gz").unlink()  # gone between the listing and the ledger check
    names = {"a": str(tmp_path / "a.warc.gz"), "b": str(tmp_path / "b.warc.gz")}
    assert to_do(storage, names, lambda n: str(tmp_path / f"{n}.json"), {"a"}) == (["b"], [])
    assert ledger.exists()
