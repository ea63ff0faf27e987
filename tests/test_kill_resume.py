"""Kill and resume, every stage: the whole mixture (curate, dedup, quality, the three synthesis families,
mixture.json) runs as a user runs it, ``python -m jobs.pipeline``, on the local S3 server through a proxy
that holds one chosen request, so the job is SIGKILLed at exactly that point: while reading an input,
while writing a shard, between a shard and its ledger entry (or dedup's stats and the pipeline's marker).
A second run started meanwhile is refused naming the first. After every kill nothing unreadable is
visible. The run restarted after the last kill, answered 503 SlowDown to every 4th S3 request and a
reset connection to every 7th, gives exactly an uninterrupted run's ids and counts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.conftest import ENGLISH, ROOT, html_page, write_warc
from tests.faults import FaultyHttpProxy
from tests.scripted_llm import ScriptedLLM
from tests.scripted_mixture import answer, stage_sets
from tests.waiting import GENEROUS_S, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(4 * GENEROUS_S)]
BUCKET, CRAWL = "killed", "CC-MAIN-2024-22"
RUN = f"/{BUCKET}/out/mixture"
# (what the job is doing, the request held: METHOD /bucket/key), in the order the pipeline reaches them
POINTS = [  # any shard: with two workers, the others may be done while one is held
    ("curate: reading a shard", rf"^GET /{BUCKET}/in/s1\.warc\.gz$"),
    ("curate: writing a shard", rf"^(PUT|POST) {RUN}/filter/{CRAWL}/"),
    ("curate: shard written, ledger entry not", rf"^(PUT|POST) {RUN}/filter/_ledger/"),
    ("dedup: reading the curated shards", rf"^GET {RUN}/filter/{CRAWL}/"),
    ("dedup: writing a shard", rf"^(PUT|POST) {RUN}/dedup/{CRAWL}/"),
    ("dedup: shards written, stats not", rf"^(PUT|POST) {RUN}/dedup/_stats\.json$"),
    ("dedup: stats written, the pipeline's marker not", rf"^(PUT|POST) {RUN}/dedup/_pipeline\.json$"),
    ("quality: reading a shard", rf"^GET {RUN}/dedup/{CRAWL}/"),
    ("quality: writing a shard", rf"^(PUT|POST) {RUN}/quality/{CRAWL}/"),
    ("quality: shard written, ledger entry not", rf"^(PUT|POST) {RUN}/quality/_ledger/"),
    ("rephrase: writing a batch of answers", rf"^(PUT|POST) {RUN}/synth/rephrase-nemotron/_parts/"),
    ("rewire: writing a shard", rf"^(PUT|POST) {RUN}/synth/rewire/{CRAWL}/"),
    ("tpt: shard written, ledger entry not", rf"^(PUT|POST) {RUN}/synth/tpt/_ledger/"),
    ("mixture.json", rf"^(PUT|POST) {RUN}/mixture\.json$"),
]


def command(root: str, endpoint: str, server: str, tiny_bert: str, tiny_fasttext: str) -> list[str]:
    """The user's pipeline command; every synthesis stage gets documents whatever buckets the random tiny
    classifiers give (Nemotron-CC's threshold and REWIRE's band open to all)."""
    sets = [f"root={root}", f"input=[s3://{BUCKET}/in/*.warc.gz]", f"storage.endpoint_url={endpoint}",
            *stage_sets(server, tiny_bert, tiny_fasttext, nemotron=("routing.threshold=0",),
                        rewire=("select={column: quality_bucket, min: 0}",))]
    return [sys.executable, "-m", "jobs.pipeline", "--config", str(ROOT / "jobs" / "recipes" / "mixture.yaml"),
            *[arg for s in sets for arg in ("--set", s)]]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def visible(fs: pafs.S3FileSystem, prefix: str) -> dict[str, list[str]]:
    """The ids in every finished Parquet file under ``prefix`` (so each is readable), by output folder
    (``synth/rewire/_rejected``; crawl folders left out). Staging and answer parts are not output."""
    found: dict[str, list[str]] = {}
    for info in fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True)):
        parts = info.path[len(prefix) + 1:].split("/")
        if info.type != pafs.FileType.File or not parts[-1].endswith(".parquet") or parts[-1].startswith(".") \
                or "_parts" in parts:
            continue
        folder = "/".join(p for p in parts[:-1] if not p.startswith("CC-MAIN-"))
        found.setdefault(folder, []).extend(pq.read_table(info.path, columns=["id"], filesystem=fs)
                                            .column("id").to_pylist())
    return found


def test_a_pipeline_killed_at_every_stage_resumes_to_an_uninterrupted_runs_output(
        tmp_path, s3_server, s3_client, tiny_bert, tiny_fasttext):
    s3_client.create_bucket(Bucket=BUCKET)
    rng = random.Random(3)
    for shard in range(3):
        pages = [{"url": f"https://town{shard}-{i}.example.org/", "body": html_page(f"T{i}", rng.sample(ENGLISH, 4))}
                 for i in range(8)]
        s3_client.upload_file(str(write_warc(tmp_path / f"s{shard}.warc.gz", pages)), BUCKET, f"in/s{shard}.warc.gz")
    fs = pafs.S3FileSystem(endpoint_override=s3_server.removeprefix("http://"), scheme="http", region="us-east-1")
    server, proxy = ScriptedLLM(answer), FaultyHttpProxy(s3_server)
    killed = command(f"s3://{BUCKET}/out", proxy.url, server.url, tiny_bert, tiny_fasttext)
    try:
        for n, (point, pattern) in enumerate(POINTS):
            proxy.hold(pattern)
            job = start(killed)
            try:
                wait_until(lambda j=job: proxy.held.wait(0.5) or j.poll() is not None, point, every_s=0)
                assert job.poll() is None, f"ended before {point}: {job.stderr.read()[-2000:]}"
                if n == 0:
                    second = subprocess.run(killed, cwd=ROOT, capture_output=True, text=True, timeout=GENEROUS_S)
                    assert second.returncode == 2
                    assert second.stderr.strip().splitlines()[-1].startswith(
                        f"error: output s3://{BUCKET}/out/mixture is being written by another run: pid {job.pid} on ")
            finally:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
                proxy.hold(None)
            for folder, ids in visible(fs, f"{BUCKET}/out/mixture").items():
                assert len(ids) == len(set(ids)), f"after the kill at {point}: repeated ids in {folder}"
        with proxy.lock:  # the last run: 503 SlowDown to every 4th request, a reset connection to every 7th
            proxy.faults, proxy.every, proxy.reset_every = proxy.requests + 100_000, 4, 7
        resumed = start(killed)
        assert resumed.wait(timeout=GENEROUS_S) == 0, resumed.stderr.read()[-3000:]
        assert proxy.slow_downs > 10 and proxy.resets > 10
        clean = start(command(f"s3://{BUCKET}/clean", s3_server, server.url, tiny_bert, tiny_fasttext))
        assert clean.wait(timeout=GENEROUS_S) == 0, clean.stderr.read()[-3000:]
    finally:
        proxy.close()
        server.close()

    after, uninterrupted = visible(fs, f"{BUCKET}/out/mixture"), visible(fs, f"{BUCKET}/clean/mixture")
    assert sorted(after) == sorted(uninterrupted)
    assert {"filter", "dedup", "dedup/_duplicates", "quality", "synth/rephrase-nemotron", "synth/rewire",
            "synth/tpt"} <= set(after)
    for folder, ids in uninterrupted.items():
        assert sorted(after[folder]) == sorted(ids), folder
        assert len(ids) == len(set(ids)), folder
    mixtures = [json.loads(s3_client.get_object(Bucket=BUCKET, Key=f"{side}/mixture/mixture.json")["Body"].read())
                for side in ("out", "clean")]
    for mixture in mixtures:
        mixture.pop("wall_seconds")
        mixture["sources"] = [source.replace("/clean/", "/out/") for source in mixture["sources"]]
    assert mixtures[0] == mixtures[1] and mixtures[0]["documents"] > 0
    left = [o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("Contents", [])]
    assert not [k for k in left if k.endswith("_lock.json") or "/_parts/" in k], left
