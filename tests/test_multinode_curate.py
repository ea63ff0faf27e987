"""Curation on a cluster of several Ray nodes (``tests/multinode.py``), run as a user runs it (``python -m
jobs.curate`` with ``ray.address``), input and output on the local S3 server: the work is spread over the nodes
and the output equals a one-node run's; with a worker node killed mid-job (a spot preemption) the job still
finishes with that output, its lost shards listed under ``retried``, and later runs size their pool from the
nodes that are alive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pyarrow.dataset as pads
import pytest
from warcio.archiveiterator import ArchiveIterator

from tests.conftest import ROOT, write_warc
from tests.multinode import ENV, ray_cluster
from tests.test_curate_job import _s3fs
from tests.waiting import GENEROUS_S, wait_until

BUCKET = "multinode-curate"
SHARDS = 6
RECIPE = "jobs/recipes/fineweb.yaml"
VOLATILE = ("run", "wall_seconds", "timing", "seconds", "retried", "failed")  # differ between two equal runs


@pytest.fixture(scope="module")
def crawl(s3_client, shared_data, tmp_path_factory) -> str:
    """Six WARC shards of real Common Crawl pages (every sixth page of the dev WARC each) on the S3 server."""
    pages = []
    with open(shared_data / "real-pages-dev.warc.gz", "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response":
                pages.append({"url": record.rec_headers.get_header("WARC-Target-URI"),
                              "body": record.content_stream().read(),
                              "content_type": record.http_headers.get_header("Content-Type") or "text/html"})
    folder = tmp_path_factory.mktemp("crawl")
    s3_client.create_bucket(Bucket=BUCKET)
    for k in range(SHARDS):
        warc = write_warc(folder / f"CC-MAIN-2024-22-{k:05d}.warc.gz", pages[k::SHARDS])
        s3_client.upload_file(str(warc), BUCKET, f"in/{warc.name}")
    return f"s3://{BUCKET}/in/*.warc.gz"


def curate(s3_server: str, crawl: str, out: str, *sets: str) -> subprocess.Popen:
    """The user's command, with this test's input, output and S3 endpoint (and ``sets``)."""
    args = [f"input.paths={crawl}", f"output.root=s3://{BUCKET}/{out}", f"storage.endpoint_url={s3_server}", *sets]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV
    return subprocess.Popen([sys.executable, "-m", "jobs.curate", "--config", RECIPE,
                             *(a for s in args for a in ("--set", s))], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(job: subprocess.Popen, bound_s: float = GENEROUS_S) -> str:
    """Wait for the job (failing the test past ``bound_s``: it hangs); its stderr once it succeeded."""
    try:
        out, err = job.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
        pytest.fail(f"the job did not end within {bound_s:g} s:\n{err[-4000:]}")
    assert job.returncode == 0, out[-2000:] + err[-4000:]
    return err


def outcome(s3_client, s3_server: str, out: str) -> dict:
    """What a run wrote: each unit's rows, the stats that do not depend on timing, and every kept document id."""
    stage = f"{out}/fineweb/filter"
    ledger = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=f"{stage}/_ledger/")["Contents"]
    entries = [json.loads(s3_client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in ledger]
    stats = json.loads(s3_client.get_object(Bucket=BUCKET, Key=f"{stage}/_stats.json")["Body"].read())
    for op in stats["operators"].values():
        op.pop("seconds"), op.pop("docs_per_s")
    kept = pads.dataset(f"{BUCKET}/{stage}", filesystem=_s3fs(s3_server), format="parquet",
                        exclude_invalid_files=True).to_table(columns=["id"]).column("id").to_pylist()
    return {"rows": {e["shard"]: e["rows"] for e in entries}, "nodes": [e["node"] for e in entries],
            "stats": {k: v for k, v in stats.items() if k not in VOLATILE}, "ids": Counter(kept),
            "retried": stats["retried"], "failed": stats["failed"], "workers": stats["timing"].get("workers")}


def same(run: dict, undisturbed: dict) -> None:
    """Equal output, nothing written twice."""
    assert run["rows"] == undisturbed["rows"]
    assert run["stats"] == undisturbed["stats"]
    assert run["ids"] == undisturbed["ids"] and set(run["ids"].values()) == {1}


@pytest.fixture(scope="module")
def undisturbed(s3_client, s3_server, crawl) -> dict:
    """The same run on one node: a local Ray of the job's own."""
    finish(curate(s3_server, crawl, "one-node"))
    run = outcome(s3_client, s3_server, "one-node")
    assert len(run["rows"]) == SHARDS and sum(r["data"] for r in run["rows"].values()) > 0
    return run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_worker_nodes_share_the_shards_and_write_what_one_node_writes(s3_client, s3_server, crawl, undisturbed):
    with ray_cluster(head_cpus=0, workers={"w1": 1, "w2": 1}, resources={"w1": {"w1": 1}, "w2": {"w2": 2}}) as ray:
        finish(curate(s3_server, crawl, "two-nodes", f"ray.address={ray.address}"))
        names = ray.ids()

    run = outcome(s3_client, s3_server, "two-nodes")
    same(run, undisturbed)
    assert run["retried"] == [] and run["workers"] == 2  # one per CPU of the two workers; the head has none
    assert sorted(set(names[n] for n in run["nodes"])) == ["w1", "w2"]


def ledger_count(s3_client, out: str) -> int:
    return s3_client.list_objects_v2(Bucket=BUCKET, Prefix=f"{out}/fineweb/filter/_ledger/").get("KeyCount", 0)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
def test_a_worker_node_lost_mid_job_costs_only_its_shards_and_later_runs_use_the_alive_nodes(
        s3_client, s3_server, crawl, undisturbed):
    with ray_cluster(head_cpus=1, workers={"w1": 1, "w2": 1}) as ray:
        job = curate(s3_server, crawl, "node-lost", f"ray.address={ray.address}")
        wait_until(lambda: ledger_count(s3_client, "node-lost") >= 2 or job.poll() is not None, "two shards done")
        ray.kill("w1")  # its raylet and its workers, one of them in the middle of a shard
        finish(job, bound_s=600)  # before: the shard lost with w1 was never answered, the job hung
        lost = outcome(s3_client, s3_server, "node-lost")
        names = ray.ids()

        # after the loss: a fresh run sizes its pool from the two alive nodes' CPUs; asked for more workers than
        # those, it runs with the ones placed (before: a shard was bound to a worker that was never placed)
        started = time.monotonic()
        finish(curate(s3_server, crawl, "after-loss", f"ray.address={ray.address}"), bound_s=600)
        more = curate(s3_server, crawl, "after-loss-3", f"ray.address={ray.address}", "ray.workers=3")
        said = finish(more, bound_s=600)
        print(f"two runs after the loss took {time.monotonic() - started:.0f} s")

    same(lost, undisturbed)
    assert lost["failed"] == [] and lost["retried"], "no shard was running on the lost node"
    assert {r["shard"] for r in lost["retried"]} <= set(lost["rows"])
    after = outcome(s3_client, s3_server, "after-loss")
    same(after, undisturbed)
    assert after["workers"] == 2 and "w1" not in {names[n] for n in after["nodes"]}
    same(outcome(s3_client, s3_server, "after-loss-3"), undisturbed)
    assert re.search(r"[12] of 3 workers were not up \(no free CPU for them on the alive Ray nodes", said)
