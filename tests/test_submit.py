"""`make submit` against a real Ray head on 127.0.0.1: the curation job on real Common Crawl data via S3."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from jobs import sentinel
from tests.test_sentinel import NEW, put_crawl, put_json, schedule

REPO = Path(__file__).resolve().parent.parent
RAY = str(REPO / ".venv" / "bin" / "ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(s3_server):
    """`ray start --head --block` with Ray's defaults (token auth included), stopped with its process group."""
    folder = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}

    def start() -> tuple[subprocess.Popen, str]:
        port, dashboard = _free_port(), _free_port()
        # the agents' fixed default ports would clash with another Ray on this machine (the tests' own)
        agents = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                          "runtime-env-agent-port", "metrics-export-port")]
        return subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--dashboard-host=127.0.0.1",
                                 f"--dashboard-port={dashboard}", f"--temp-dir={folder}/t", *agents], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(f"{folder}/head.log", "wb"),
                                start_new_session=True), f"http://127.0.0.1:{dashboard}"

    head, address = start()
    deadline, starts = time.monotonic() + 240, 1
    try:
        while (probe := subprocess.run([RAY, "job", "submit", f"--address={address}", "--", "true"],  # the job
                                       env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True,  # agent is last
                                       text=True)).returncode != 0:
            assert time.monotonic() < deadline, probe.stderr[-2000:] + probe.stdout[-2000:]
            if head.poll() is not None:  # Ray's fixed 30 s for a node to register, missed on a busy machine
                assert starts < 3, Path(f"{folder}/head.log").read_text()[-2000:]
                with contextlib.suppress(ProcessLookupError):  # what the failed start left
                    os.killpg(head.pid, signal.SIGKILL)
                head, address = start()
                starts += 1
            time.sleep(2)
        yield address
    finally:  # Ray's own graceful stop takes about 30 s here; the whole process group goes at once
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
    left = subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True).stdout.split()
    shutil.rmtree(folder, ignore_errors=True)
    assert left == [], f"Ray processes outlived the head's process group: {left}"


def _make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``make <args>`` in the repository, never (re)installing the venv: a reinstall while other tests run (a
    pyproject.toml newer than the venv) takes packages away under them."""
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _etags(s3_client) -> dict[str, str]:
    listed = s3_client.list_objects_v2(Bucket="submit", Prefix="out/")["Contents"]
    return {o["Key"]: o["ETag"] for o in listed if not o["Key"].endswith("_stats.json")}


def test_make_submit_runs_the_curation_job_on_the_head_and_resumes(ray_head, s3_server, s3_client, shared_data):
    s3_client.create_bucket(Bucket="submit")
    s3_client.upload_file(str(shared_data / "real-pages-dev.warc.gz"), "submit", "crawl/CC-MAIN-2024-18-00000.warc.gz")
    args = [f"ADDRESS={ray_head}", "RECIPE=jobs/recipes/fineweb.yaml", "INPUT=s3://submit/crawl/*.warc.gz",
            "OUTPUT=s3://submit/out", f"SET=storage.endpoint_url={s3_server}"]

    first = _make("submit", *args, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "succeeded" in first.stdout.lower()
    summary = json.loads(next(line for line in first.stdout.splitlines() if line.startswith('{"shards"')))
    assert summary["shards"] == 1 and "1 shards: 0 done before, 1 to do" in first.stdout
    assert "progress curate: 1/1 shards, 314 docs" in first.stdout  # the log line the dashboard shows

    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", region="us-east-1")
    stats = json.loads(s3_client.get_object(Bucket="submit", Key="out/fineweb/filter/_stats.json")["Body"].read())
    kept = ds.dataset("submit/out/fineweb/filter", filesystem=fs, format="parquet", exclude_invalid_files=True)
    rejected = ds.dataset("submit/out/fineweb/rejected", filesystem=fs, format="parquet", exclude_invalid_files=True)
    assert kept.count_rows() == stats["rows"]["data"] > 0
    assert kept.count_rows() + rejected.count_rows() == sum(stats["read"].values())
    before = _etags(s3_client)

    second = _make("submit", *args, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "1 shards: 1 done before, 0 to do" in second.stdout  # the job's log, streamed back by the submit
    after = _etags(s3_client)
    assert after == before

    listed = _make("status", f"ADDRESS={ray_head}").stdout.splitlines()
    ours = [line for line in listed if 'entrypoint="python -m jobs --config jobs/recipes/fineweb.yaml' in line]
    assert len(ours) == 2 and all("status=<JobStatus.SUCCEEDED" in line for line in ours), listed


def test_the_sentinel_submits_a_new_crawl_as_a_ray_job_once(ray_head, s3_server, s3_client, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the Jobs SDK client, like `make submit`
    bucket = f"sentinel-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    root, index = f"s3://{bucket}/cc", f"s3://{bucket}/collinfo.json"
    put_json(s3_client, index, [{"id": NEW}])
    put_crawl(s3_client, NEW, ["whirlwind.warc.gz"])
    recipe = schedule(s3_server, root, f"source.uri={index}", "launch.mode=submit", f"launch.address={ray_head}",
                      f"launch.working_dir={REPO}", "launch.poll_s=1")

    stats = sentinel.run(recipe)

    assert stats["started"] == 1 and stats["runs"] == {NEW: {"attempt": 1, "status": "done"}}
    entry = json.loads(s3_client.get_object(Bucket=bucket, Key=f"cc/_runs/{NEW}.json")["Body"].read())
    assert entry["launch"] == {"mode": "submit", "name": f"cc-sentinel-{NEW.lower()}-a1"}
    assert (entry["result"]["shards"], entry["result"]["rows"]) == (1, {"data": 0, "rejected": 1})
    ledger = json.loads(s3_client.get_object(
        Bucket=bucket, Key=f"cc/{NEW}/fineweb/filter/_ledger/whirlwind.warc.json")["Body"].read())
    assert ledger["attempt"] == 1  # written under the lease, by the job on the head
    assert sentinel.run(recipe)["started"] == 0
