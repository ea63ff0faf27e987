"""The stages on a Ray cluster of a head without CPUs and two one-CPU worker nodes (node_b, node_c) on this
machine, input and output on the local S3 server: each gives what one node gives, with its work on both nodes;
a worker node SIGKILLed mid-job (raylet, Ray workers and what they started) is survived (quality, dedup), or stops
the job in one line (dedup with every worker node lost). Dedup runs Spark standalone with a Spark worker under an
actor on each node."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.dedup import DedupRecipe, run
from jobs.dedup.spark_on_ray import LOST_GRACE_S, WORKER_CLASS
from tests.conftest import ROOT
from tests.multinode import ENV, RayCluster, ray_cluster
from tests.test_classify_job import RECIPE as QUALITY_RECIPE
from tests.test_classify_job import write_input
from tests.test_dedup import RECIPE, edit, write_run
from tests.waiting import GENEROUS_S, wait_until

pytestmark = pytest.mark.timeout(3 * GENEROUS_S)  # a one-node run, then a cluster's start and run, on a busy machine
TASK = re.compile(rb"Executor: Running task ")
LOST_AFTER = 50  # of about 120 tasks a node runs in the whole job
SETTINGS = ["spark.master=ray", "spark.driver_memory=1g", "spark.shuffle_partitions=4"]


QUALITY_SHARDS = 4


@pytest.fixture
def cluster():
    """A head without CPUs (the driver, and dedup's Spark master) and worker nodes node_b and node_c, one CPU each."""
    with ray_cluster(head_cpus=0, workers={"node_b": 1, "node_c": 1}) as cluster:
        yield cluster


@pytest.fixture
def bucket(s3_client):
    """A new bucket on the local S3 server (``s3://<name>``), emptied and removed after."""
    name = f"mn-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    yield f"s3://{name}"
    for obj in s3_client.list_objects_v2(Bucket=name).get("Contents", []):
        s3_client.delete_object(Bucket=name, Key=obj["Key"])
    s3_client.delete_bucket(Bucket=name)


def node_tree(cluster: RayCluster, name: str) -> list[psutil.Process]:
    """A node's processes: ``ray start``, the raylet, the Ray workers and what they started, wherever they run
    (the Spark worker under its actor has a session of its own, out of the node's process group)."""
    root = psutil.Process(cluster.processes[name].pid)
    return [root, *root.children(recursive=True)]


def spark_folder(cluster: RayCluster, name: str) -> Path | None:
    """The work folder of the Spark worker running under this node's actor, if one runs."""
    for proc in node_tree(cluster, name):
        with contextlib.suppress(psutil.Error):
            args = proc.cmdline()
            if WORKER_CLASS in args:
                return Path(args[args.index("--work-dir") + 1])
    return None


def kill_node(cluster: RayCluster, name: str) -> None:
    """SIGKILL a node's whole tree at once, its Spark worker and executor included, as a preemption takes them."""
    for proc in node_tree(cluster, name):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    cluster.kill(name)


def upload_run(tmp_path: Path, bucket: str, s3_client, texts: list[str], shards: int) -> str:
    """Originals, a 1 % edit and an exact copy of each text, over ``shards`` shards on S3; return the input URI."""
    rng = random.Random(3)
    rows = []
    for i, text in enumerate(texts):
        rows += [dict(id=f"d{i:03d}", text=text), dict(id=f"d{i:03d}-near", text=edit(text, 0.01, rng)),
                 dict(id=f"d{i:03d}-copy", text=text)]
    local = write_run(tmp_path / "filter", {f"s{k}": rows[k::shards] for k in range(shards)})
    for f in local.rglob("*.parquet"):
        s3_client.upload_file(str(f), bucket[5:], f"filter/{f.relative_to(local)}")
    return f"{bucket}/filter"


def dedup_outcome(output: str, s3_server: str) -> tuple[list[str], list[dict], dict]:
    """Kept ids, the duplicates table (in order) and the stats' counts of a dedup output on S3."""
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http")
    base = output[5:]
    kept = pads.dataset(base, filesystem=fs, format="parquet").to_table(columns=["id"])
    dups = pads.dataset(f"{base}/_duplicates", filesystem=fs, format="parquet").to_table().to_pylist()
    with fs.open_input_stream(f"{base}/_stats.json") as f:
        stats = json.loads(f.read())
    return sorted(kept.column("id").to_pylist()), dups, {k: v for k, v in stats.items() if k != "seconds"}


def dedup(cluster: RayCluster, src: str, output: str, s3_server: str) -> subprocess.Popen:
    """The user's command against the cluster's head."""
    command = [sys.executable, "-m", "jobs.dedup", "--config", RECIPE, "--set", f"input={src}",
               "--set", f"output={output}", "--set", f"storage.endpoint_url={s3_server}",
               "--set", f"ray.address={cluster.address}", *(a for s in SETTINGS for a in ("--set", s))]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV
    return subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def spark_folders(cluster: RayCluster, job: subprocess.Popen) -> dict[str, Path]:
    """Each worker node's Spark worker folder, once the job has started them all."""
    def found():
        folders = {name: spark_folder(cluster, name) for name in ("node_b", "node_c")}
        return folders if all(folders.values()) else None

    return wait_until(found, "a Spark worker under each node's actor", alive=lambda: job.poll() is None, every_s=0.2)


def tasks_run(folder: Path) -> int:
    """Spark tasks the executors of the Spark worker in ``folder`` ran, from their logs."""
    return sum(len(TASK.findall(log.read_bytes())) for log in folder.glob("*/*/stderr"))


def one_node(tmp_path: Path, spark, src: str, s3_server: str) -> tuple:
    output = src.replace("/filter", "/one-node")
    run(load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={output}", f"storage.endpoint_url={s3_server}"]),
        spark)
    return dedup_outcome(output, s3_server)


def test_spark_workers_on_two_ray_nodes_dedup_as_one_node(tmp_path, spark, cluster, bucket, s3_client, s3_server,
                                                          real_texts):
    texts = [t for t in real_texts if len(t.split()) >= 100][:12]
    src = upload_run(tmp_path, bucket, s3_client, texts, shards=4)
    expected = one_node(tmp_path, spark, src, s3_server)
    job = dedup(cluster, src, f"{bucket}/dedup", s3_server)
    folders = spark_folders(cluster, job)
    out, err = job.communicate(timeout=GENEROUS_S)
    assert job.returncode == 0, err[-3000:]
    assert dedup_outcome(f"{bucket}/dedup", s3_server) == expected
    assert expected[2]["removed"] == 2 * len(texts) and expected[2]["shards"] == 4
    per_node = {name: tasks_run(folder) for name, folder in folders.items()}
    print(f"\nSpark tasks per Ray node: {per_node}")
    assert all(per_node.values()), per_node


@pytest.mark.chaos
def test_a_worker_node_lost_mid_job_is_recovered_by_spark(tmp_path, spark, cluster, bucket, s3_client, s3_server,
                                                          real_texts):
    """node_c (its raylet, its Ray workers, the Spark worker under its actor and that worker's executor) is
    SIGKILLed once its executor has run LOST_AFTER tasks, past the first checkpointed stages: Spark reruns the
    lost work on node_b's executor and the job ends as an undisturbed run does."""
    texts = [t for t in real_texts if len(t.split()) >= 100][:12]
    src = upload_run(tmp_path, bucket, s3_client, texts, shards=4)
    expected = one_node(tmp_path, spark, src, s3_server)
    job = dedup(cluster, src, f"{bucket}/dedup", s3_server)
    lost = spark_folders(cluster, job)["node_c"]
    wait_until(lambda: tasks_run(lost) >= LOST_AFTER, f"{LOST_AFTER} tasks on node_c", alive=lambda: job.poll() is None,
               every_s=0.5)
    kill_node(cluster, "node_c")
    out, err = job.communicate(timeout=GENEROUS_S)
    print("\nRC", job.returncode, "\nERR", err[-5000:])
    assert job.returncode == 0, err[-3000:]
    assert "Lost executor" in err
    assert dedup_outcome(f"{bucket}/dedup", s3_server) == expected


@pytest.mark.chaos
def test_every_worker_node_lost_stops_the_job_with_one_line(tmp_path, cluster, bucket, s3_client, s3_server,
                                                            real_texts):
    """With no Spark worker left Spark would wait for one forever: the job is cancelled and names the loss."""
    texts = [t for t in real_texts if len(t.split()) >= 100][:12]
    src = upload_run(tmp_path, bucket, s3_client, texts, shards=4)
    job = dedup(cluster, src, f"{bucket}/dedup", s3_server)
    folders = spark_folders(cluster, job)
    wait_until(lambda: all(tasks_run(f) for f in folders.values()), "a task on each node",
               alive=lambda: job.poll() is None, every_s=0.5)
    kill_node(cluster, "node_b")
    kill_node(cluster, "node_c")
    out, err = job.communicate(timeout=GENEROUS_S)
    assert job.returncode == 2, err[-3000:]
    assert (f"error: spark.master=ray: no Spark worker alive for {LOST_GRACE_S} s (their Ray nodes lost?); the "
            "output has no _stats.json yet: run the job again") in err.splitlines()


@pytest.mark.chaos
def test_a_worker_node_lost_after_the_checkpointed_stages_ends_as_one_node(tmp_path, spark, cluster, bucket, s3_client,
                                                                           s3_server, real_texts):
    """node_c goes once the first deduped shard is on S3: the duplicates are computed (``localCheckpoint``: kept
    only in the executors' memory, no lineage) and the writing has begun. Either Spark recomputes what node_c held
    and the job ends as one node's, or it stops with one line and a re-run (node_b alone) gives that output."""
    texts = [t for t in real_texts if len(t.split()) >= 100][:12]
    src = upload_run(tmp_path, bucket, s3_client, texts, shards=4)
    expected = one_node(tmp_path, spark, src, s3_server)
    job = dedup(cluster, src, f"{bucket}/dedup", s3_server)
    spark_folders(cluster, job)

    def written() -> bool:
        listed = s3_client.list_objects_v2(Bucket=bucket[5:], Prefix="dedup/CC-MAIN-").get("Contents", [])
        return any(o["Key"].endswith(".parquet") for o in listed)

    wait_until(written, "a first deduped shard", alive=lambda: job.poll() is None, every_s=0.1)
    kill_node(cluster, "node_c")
    _, err = job.communicate(timeout=GENEROUS_S)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    print(f"\ndedup, node_c lost after the first shard was written: exit {job.returncode}; {errors}")
    if job.returncode != 0:
        assert (job.returncode, len(errors)) == (2, 1) and errors[0].endswith("run the job again"), err[-3000:]
        wait_until(lambda: not any(n["alive"] for n in cluster.nodes() if n["name"] == "node_c"),
                   "Ray to see node_c gone (its health check), as a user's re-run would", every_s=1)
        again = dedup(cluster, src, f"{bucket}/dedup", s3_server)
        _, err = again.communicate(timeout=GENEROUS_S)
        assert again.returncode == 0, err[-3000:]
    assert dedup_outcome(f"{bucket}/dedup", s3_server) == expected


def classify_popen(src: str, output: str, s3_server: str, tiny_bert: str, tiny_fasttext: str,
                   cluster: RayCluster) -> subprocess.Popen:
    """The user's command on ``cluster``."""
    sets = [f"input={src}", f"output={output}", f"storage.endpoint_url={s3_server}",
            f"classifiers=[{{name: dclm, kind: fasttext, model: {tiny_fasttext}}}, {{name: edu, kind: transformer, "
            f"model: {tiny_bert}, device: cpu, dtype: float32, batch_size: 4, replicas: 2}}]",
            "buckets.classifiers=[dclm, edu]", "buckets.sample_fraction=1.0", "cache.enabled=false",
            f"ray.address={cluster.address}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV | {"HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "jobs.classify", "--config", QUALITY_RECIPE,
                             *[a for s in sets for a in ("--set", s)]], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def classify(*args, **kwargs) -> subprocess.CompletedProcess:
    """``classify_popen``, run to its end."""
    job = classify_popen(*args, **kwargs)
    out, err = job.communicate(timeout=GENEROUS_S)
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def quality_outcome(output: str, s3_server: str, shards: int = QUALITY_SHARDS) -> tuple[dict, dict, dict]:
    """Each shard's table (as rows), the stats but their timing, and the ledger entries' nodes by shard."""
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http")
    base = output[5:]
    tables = {f"s{k}": pq.read_table(f"{base}/CC-MAIN-2024-22/s{k}.parquet", filesystem=fs).to_pylist()
              for k in range(shards)}
    with fs.open_input_stream(f"{base}/_stats.json") as f:
        stats = {k: v for k, v in json.loads(f.read()).items() if k != "wall_seconds"}
    nodes = {}
    for k in range(shards):
        with fs.open_input_stream(f"{base}/_ledger/CC-MAIN-2024-22/s{k}.json") as f:
            nodes[f"s{k}"] = json.loads(f.read())["nodes"]
    return tables, stats, nodes


def quality_input(tmp_path: Path, bucket: str, s3_client, shards: int = QUALITY_SHARDS) -> str:
    """Upload the quality input; return its URI."""
    write_input(tmp_path / "in", shards=shards)
    for f in (tmp_path / "in").rglob("*.parquet"):
        s3_client.upload_file(str(f), bucket[5:], f"dedup/{f.relative_to(tmp_path / 'in')}")
    return f"{bucket}/dedup"


def quality_on_node_b(cluster: RayCluster, src: str, bucket: str, s3_server: str, tiny_bert: str,
                      tiny_fasttext: str, shards: int = QUALITY_SHARDS) -> tuple:
    """node_c gone (killed now if it runs, and seen dead by Ray), the job on node_b alone: one node's outcome.
    (The cluster's own node, not a local Ray of the test's: a second Ray start on this busy machine is the
    likelier to miss Ray's 30 s start bound.)"""
    if cluster.processes["node_c"].poll() is None:
        kill_node(cluster, "node_c")
    wait_until(lambda: not any(n["alive"] for n in cluster.nodes() if n["name"] == "node_c"), "node_c seen dead")
    alone = classify(src, f"{bucket}/one-node", s3_server, tiny_bert, tiny_fasttext, cluster=cluster)
    assert alone.returncode == 0, alone.stderr[-3000:]
    return quality_outcome(f"{bucket}/one-node", s3_server, shards)


@pytest.mark.chaos
def test_quality_on_two_worker_nodes_scores_as_one_node(tmp_path, cluster, bucket, s3_client, s3_server, tiny_bert,
                                                       tiny_fasttext):
    src = quality_input(tmp_path, bucket, s3_client)
    spread = classify(src, f"{bucket}/quality", s3_server, tiny_bert, tiny_fasttext, cluster=cluster)
    assert spread.returncode == 0, spread.stderr[-3000:]
    shards, stats, nodes = quality_outcome(f"{bucket}/quality", s3_server)
    names = cluster.ids()
    expected = quality_on_node_b(cluster, src, bucket, s3_server, tiny_bert, tiny_fasttext)
    assert (shards, stats) == expected[:2]
    assert stats["documents"] == 10 and stats["failed"] == []
    where = {stage: sorted({names[n[stage]] for n in nodes.values()}) for stage in ("write", "score_edu")}
    print(f"\nnodes per stage: {where}")
    assert where == {"write": ["node_b", "node_c"], "score_edu": ["node_b", "node_c"]}


LOSS_SHARDS = 10  # one document each: shards still to score when node_c goes


@pytest.mark.chaos
def test_quality_with_a_worker_node_lost_mid_job_ends_as_one_node(tmp_path, cluster, bucket, s3_client, s3_server,
                                                                  tiny_bert, tiny_fasttext):
    """node_c is SIGKILLed once the first shard's ledger entry is written, others still to do. The run was sized
    for two CPUs (two classifier actors of 0.75 CPU); when Ray sees one CPU left the job plans its unfinished
    shards again for node_b (listed under ``retried``), and ends with node_b's output alone."""
    src = quality_input(tmp_path, bucket, s3_client, LOSS_SHARDS)

    def ledger() -> set[str]:
        listed = s3_client.list_objects_v2(Bucket=bucket[5:], Prefix="quality/_ledger/").get("Contents", [])
        return {o["Key"] for o in listed}

    job = classify_popen(src, f"{bucket}/quality", s3_server, tiny_bert, tiny_fasttext, cluster=cluster)
    wait_until(ledger, "a first shard's ledger entry", alive=lambda: job.poll() is None, every_s=0.1)
    kill_node(cluster, "node_c")
    at_loss = ledger()
    _, err = job.communicate(timeout=GENEROUS_S)
    print(f"\nquality, node_c lost after {len(at_loss)} of {LOSS_SHARDS} shards: exit {job.returncode}")
    assert len(at_loss) < LOSS_SHARDS, "the job was done before the node was lost"
    assert job.returncode == 0, err[-3000:]
    shards, stats, _ = quality_outcome(f"{bucket}/quality", s3_server, LOSS_SHARDS)
    retried = stats.pop("retried")
    print(f"re-planned: {retried}")
    assert stats["failed"] == [] and stats["shards"] == LOSS_SHARDS
    assert ("planning the" in err) == bool(retried)
    assert {r["error"] for r in retried} <= {"unfinished when the cluster went from 2 to 1 CPU(s) (a node lost)"}
    assert {r["shard"] for r in retried}.isdisjoint(k.split("/_ledger/")[1].removesuffix(".json") for k in at_loss)
    alone_shards, alone_stats = quality_on_node_b(cluster, src, bucket, s3_server, tiny_bert, tiny_fasttext,
                                                  LOSS_SHARDS)[:2]
    assert alone_stats.pop("retried") == []
    assert (shards, stats) == (alone_shards, alone_stats)
