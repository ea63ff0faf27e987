"""Synthesis on a Ray cluster of a head without CPUs and two one-CPU worker nodes on this machine (``python -m
jobs.synthesize`` with ``ray.address``, the scripted OpenAI-compatible endpoint, input and output on the local
S3 server): the same rows, rejects, ledger entries and ``_stats.json`` as a one-node run, its shards finished on
both nodes; with a worker node SIGKILLed mid-job the job still ends with that output, nothing written twice, the
shards it planned again for the node left under ``retried``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from operators.schema import conform, output_schema
from tests import scripted_mixture
from tests.conftest import ENGLISH, ROOT
from tests.multinode import ENV, ended
from tests.scripted_llm import ScriptedLLM
from tests.test_multinode_stages import cluster, kill_node  # noqa: F401 - the cluster fixture
from tests.waiting import GENEROUS_S, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3 * GENEROUS_S)]
RECIPE = "jobs/recipes/rephrase-wrap.yaml"
CRAWL, SHARDS = "CC-MAIN-2024-22", 6
ANSWER_S = 0.1  # each answer's delay: the job lasts long enough for a node to be lost in its middle
SLOW_ANSWER_S = 3.0  # ... and long enough after it for Ray to mark the node dead (its health checks)
ENTRY_VOLATILE = ("node", "attempt")  # where a shard was finished, by which attempt


def answer(messages: list[dict], delay_s: float = ANSWER_S) -> str:
    """The mixture's scripted answers (a rephrasing: the English paragraphs), each after ``delay_s``."""
    time.sleep(delay_s)
    return scripted_mixture.answer(messages)


@pytest.fixture(scope="module")
def endpoint():
    """The scripted endpoint's URL."""
    server = ScriptedLLM(answer)
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def slow_endpoint():
    """The same answers after SLOW_ANSWER_S each: the job outlasts the time Ray takes to see a node gone."""
    server = ScriptedLLM(lambda messages: answer(messages, SLOW_ANSWER_S))
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def bucket(s3_client, tmp_path_factory) -> str:
    """A bucket holding the input: SHARDS shards of two or three English documents each."""
    name = f"mns-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    folder = tmp_path_factory.mktemp("synth-in")
    for k in range(SHARDS):
        rows = [dict(id=f"s{k}-d{i}", text="\n\n".join(ENGLISH[i:] + ENGLISH[:i]), language="en")
                for i in range(k % 2 + 2)]
        path = folder / f"s{k}.parquet"
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)
        s3_client.upload_file(str(path), name, f"in/{CRAWL}/s{k}.parquet")
    return f"s3://{name}"


def synthesize(bucket: str, out: str, s3_server: str, endpoint: str, tokenizer: str, *sets: str) -> subprocess.Popen:
    """The user's command with this test's input, output, endpoint and S3 server (and ``sets``)."""
    args = [f"input={bucket}/in", f"output={bucket}/{out}", f"storage.endpoint_url={s3_server}", "llm.engine=openai",
            "llm.model=scripted", f"llm.endpoint.url={endpoint}", f"tokenizer={tokenizer}", *sets]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV | {"HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "jobs.synthesize", "--config", RECIPE,
                             *(a for s in args for a in ("--set", s))], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ledger(s3_client, bucket: str, out: str) -> list[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket[5:], Prefix=f"{out}/_ledger/").get("Contents", [])
    return [o["Key"] for o in listed]


def outcome(bucket: str, out: str, s3_server: str) -> dict:
    """What a run wrote: each output folder's rows by id, the ledger entries but where and by which attempt each
    shard was finished, the stats but their wall time; and the nodes that finished the shards."""
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http")
    base = f"{bucket[5:]}/{out}"
    rows = {}
    for folder in (base, f"{base}/_rejected"):
        table = pads.dataset(folder, filesystem=fs, format="parquet").to_table()
        rows[folder[len(base):]] = sorted(table.to_pylist(), key=lambda r: r["id"])
    entries, nodes = {}, {}
    for k in range(SHARDS):
        with fs.open_input_stream(f"{base}/_ledger/{CRAWL}/s{k}.json") as f:
            entry = json.loads(f.read())
        nodes[f"s{k}"] = entry["node"]
        entries[f"s{k}"] = {key: v for key, v in entry.items() if key not in ENTRY_VOLATILE}
    with fs.open_input_stream(f"{base}/_stats.json") as f:
        stats = {k: v for k, v in json.loads(f.read()).items() if k != "wall_seconds"}
    parts = fs.get_file_info(pafs.FileSelector(f"{base}/_parts", recursive=True, allow_not_found=True))
    return {"rows": rows, "entries": entries, "stats": stats, "nodes": nodes,
            "parts_left": [p.path for p in parts if p.type == pafs.FileType.File]}


def same(run: dict, undisturbed: dict) -> None:
    """Equal output, no row twice, no answer part left behind."""
    assert run["stats"] == undisturbed["stats"]
    assert run["entries"] == undisturbed["entries"]
    assert run["rows"] == undisturbed["rows"]
    ids = [r["id"] for folder in run["rows"].values() for r in folder]
    assert len(ids) == len(set(ids))
    assert run["parts_left"] == []


@pytest.fixture(scope="module")
def undisturbed(bucket, s3_server, endpoint, tiny_bert) -> dict:
    """The same run on one node: a local Ray of the job's own."""
    done = ended(synthesize(bucket, "one-node", s3_server, endpoint, tiny_bert))
    assert done.returncode == 0, done.stderr[-3000:]
    run = outcome(bucket, "one-node", s3_server)
    assert run["stats"]["shards"] == SHARDS and run["stats"]["failed"] == []
    assert sum(run["stats"]["outputs"].values()) == 4 * sum(k % 2 + 2 for k in range(SHARDS))  # 4 prompts a doc
    return run


def test_synthesis_on_two_worker_nodes_writes_what_one_node_writes(cluster, bucket, s3_server,  # noqa: F811
                                                                    endpoint, tiny_bert, undisturbed):
    done = ended(synthesize(bucket, "two-nodes", s3_server, endpoint, tiny_bert, f"ray.address={cluster.address}"))
    assert done.returncode == 0, done.stderr[-3000:]
    names = cluster.ids()
    run = outcome(bucket, "two-nodes", s3_server)
    same(run, undisturbed)
    where = sorted({names[n] for n in run["nodes"].values()})
    print(f"\nshards finished per node: {where}")
    assert where == ["node_b", "node_c"]


def test_synthesis_with_a_worker_node_lost_mid_job_writes_what_one_node_writes(
        cluster, bucket, s3_client, s3_server, slow_endpoint, tiny_bert, undisturbed):  # noqa: F811
    job = synthesize(bucket, "node-lost", s3_server, slow_endpoint, tiny_bert, f"ray.address={cluster.address}",
                     "llm.batch_size=4")  # shards finish one by one (at 64 the whole run is one batch)
    wait_until(lambda: ledger(s3_client, bucket, "node-lost"), "a first shard's ledger entry",
               alive=lambda: job.poll() is None, every_s=0.1)
    kill_node(cluster, "node_c")
    at_loss = len(ledger(s3_client, bucket, "node-lost"))
    done = ended(job)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    print(f"\nsynthesis, node_c lost after {at_loss} of {SHARDS} shards: exit {done.returncode}; {errors}")
    assert at_loss < SHARDS, "the job was done before the node was lost"
    assert done.returncode == 0, done.stderr[-3000:]
    run = outcome(bucket, "node-lost", s3_server)
    retried = run["stats"].pop("retried")
    print(f"re-planned after the loss: {[r['shard'] for r in retried]}")
    assert 0 < len(retried) <= SHARDS - at_loss, done.stderr[-4000:]
    assert all(r["error"] == "unfinished when the cluster went from 2 to 1 CPU(s) (a node lost)" for r in retried)
    assert done.stderr.count("planning the") == 1
    same({**run, "stats": {**run["stats"], "retried": []}}, undisturbed)
