"""The new-crawl sentinel on the local S3 server: a fake crawl list and a fake ``commoncrawl`` bucket whose
crawls list a real WARC (whirlwind), the registry and the runs' outputs in another bucket."""

from __future__ import annotations

import gzip
import json
import shlex
import socket
import threading
import time
import uuid

import pytest
import yaml

from jobs import pipeline, sentinel
from jobs.common.recipe import load_model
from jobs.sentinel import Schedule
from jobs.sentinel.holder import main as holder_main
from jobs.sentinel.launch import hold
from operators.io import lease
from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV, StaleAttempt, commit_entry
from operators.io.storage import Storage, join
from tests.conftest import ROOT
from tests.waiting import GENEROUS_S, wait_until

WHIRLWIND = ROOT.parent / "shared" / "data" / "whirlwind.warc.gz"
SCHEDULE = str(ROOT / "jobs" / "recipes" / "schedule.yaml")
NEW, EXPIRED, LIVE, EXHAUSTED, DONE = (f"CC-MAIN-2030-{w:02d}" for w in (5, 9, 13, 18, 22))


def put_crawl(s3_client, crawl: str, names: list[str]) -> list[str]:
    """Put copies of whirlwind.warc.gz and the crawl's warc.paths.gz into the fake commoncrawl bucket."""
    s3_client.create_bucket(Bucket="commoncrawl")
    keys = [f"crawl-data/{crawl}/segments/1/warc/{name}" for name in names]
    for key in keys:
        s3_client.put_object(Bucket="commoncrawl", Key=key, Body=WHIRLWIND.read_bytes())
    s3_client.put_object(Bucket="commoncrawl", Key=f"crawl-data/{crawl}/warc.paths.gz",
                         Body=gzip.compress("\n".join(keys).encode()))
    return keys


def put_json(s3_client, uri: str, value) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(value).encode())


def snapshot(s3_client, bucket: str) -> dict:
    """Every object of ``bucket``: key -> (ETag, LastModified)."""
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def out_bucket(s3_client) -> str:
    bucket = f"out-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    return bucket


def schedule(s3_server: str, root: str, *overrides: str) -> Schedule:
    """The shipped schedule recipe, pointed at the local S3 server, launching a small curation per crawl."""
    job = [f"storage.endpoint_url={s3_server}", "input.crawl={crawl}", "output.root={root}", "ray.num_cpus=1"]
    return load_model(Schedule, SCHEDULE, [
        f"root={root}", f"storage.endpoint_url={s3_server}", "since=CC-MAIN-2030-01", "max_new_per_tick=5",
        "lease.ttl_s=10", "lease.heartbeat_s=1", "lease.max_attempts=2", "run.module=jobs.curate",
        f"run.recipe={ROOT / 'jobs' / 'recipes' / 'fineweb.yaml'}", f"run.set={json.dumps(job)}", *overrides])


@pytest.mark.parametrize("storage_root", ["local", "s3"], indirect=True)
def test_registry_entries_are_created_once_and_replaced_only_at_the_version_read(storage_root):
    storage, root = storage_root
    uri = join(root, "_runs", f"{NEW}.json")
    assert lease.read(storage, uri) is None
    first = lease.create(storage, uri, {"attempt": 1})
    with pytest.raises(lease.Conflict):
        lease.create(storage, uri, {"attempt": 9})
    second = lease.replace(storage, uri, {"attempt": 2}, first)
    with pytest.raises(lease.Conflict):
        lease.replace(storage, uri, {"attempt": 3}, first)
    assert lease.read(storage, uri) == ({"attempt": 2}, second) and second != first


def test_ticks_start_new_and_expired_crawls_once_and_skip_the_rest(s3_server, s3_client, out_bucket):
    root = f"s3://{out_bucket}/cc"
    index = f"s3://{out_bucket}-index/collinfo.json"
    s3_client.create_bucket(Bucket=f"{out_bucket}-index")
    put_json(s3_client, index, [{"id": c, "name": c} for c in (DONE, EXHAUSTED, LIVE, EXPIRED, NEW, "CC-MAIN-2029-50")])
    put_crawl(s3_client, NEW, ["whirlwind.warc.gz"])
    first_shard, _ = put_crawl(s3_client, EXPIRED, ["whirlwind-1.warc.gz", "whirlwind-2.warc.gz"])
    now = time.time()
    elsewhere = {"status": "running", "attempt": 1, "owner": "tick-elsewhere", "history": []}
    entries = {EXPIRED: {**elsewhere, "crawl": EXPIRED, "expires_at": now - 5},
               LIVE: {**elsewhere, "crawl": LIVE, "expires_at": now + 3600},
               EXHAUSTED: {**elsewhere, "crawl": EXHAUSTED, "status": "failed", "attempt": 2, "expires_at": 0,
                           "error": "boom"},
               DONE: {**elsewhere, "crawl": DONE, "status": "done", "expires_at": 0}}
    for crawl, entry in entries.items():
        put_json(s3_client, f"{root}/_runs/{crawl}.json", entry)
    # the expired attempt finished one of its two shards: the takeover resumes on its ledger
    head = s3_client.head_object(Bucket="commoncrawl", Key=first_shard)
    done_before = {"shard": "whirlwind-1.warc", "source": f"s3://commoncrawl/{first_shard}", "crawl": EXPIRED,
                   "outputs": {"data": None, "rejected": None}, "rows": {"data": 0, "rejected": 0},
                   "input": {"size": head["ContentLength"], "etag": head["ETag"]}, "read": {}, "problems": [],
                   "bytes_read": 0, "operators": {}, "seconds": 0.0, "finished_at": "2030-03-01T00:00:00+00:00"}
    ledger = f"{root}/{EXPIRED}/fineweb/filter/_ledger"
    put_json(s3_client, f"{ledger}/whirlwind-1.warc.json", done_before)
    storage = Storage(endpoint_url=s3_server)
    recipe = schedule(s3_server, root, f"source.uri={index}")

    stats = sentinel.run(recipe)

    assert stats == {"crawls": 5, "started": 2, "busy": 1, "done": 1, "exhausted": 1,
                     "runs": {NEW: {"attempt": 1, "status": "done"}, EXPIRED: {"attempt": 2, "status": "done"}}}
    new = json.loads(storage.read_bytes(f"{root}/_runs/{NEW}.json"))
    assert (new["status"], new["attempt"], new["expires_at"], new["exit_status"], new["history"]) == (
        "done", 1, 0, 0, [])
    assert (new["result"]["shards"], new["result"]["rows"]) == (1, {"data": 0, "rejected": 1})
    assert new["launch"] == {"mode": "local", "name": f"cc-sentinel-{NEW.lower()}-a1"}
    entry = json.loads(storage.read_bytes(f"{root}/{NEW}/fineweb/filter/_ledger/whirlwind.warc.json"))
    assert entry["outputs"] == {"data": f"{root}/{NEW}/fineweb/filter/CC-MAIN-2024-22/whirlwind.warc.parquet",
                                "rejected": f"{root}/{NEW}/fineweb/rejected/CC-MAIN-2024-22/whirlwind.warc.parquet"}
    assert all(storage.exists(path) for path in entry["outputs"].values())
    taken = json.loads(storage.read_bytes(f"{root}/_runs/{EXPIRED}.json"))
    assert (taken["status"], taken["attempt"], taken["history"]) == ("done", 2, [
        {"attempt": 1, "status": "running", "owner": "tick-elsewhere", "expires_at": entries[EXPIRED]["expires_at"]}])
    assert (taken["result"]["shards"], taken["result"]["rows"]) == (2, {"data": 0, "rejected": 1})
    assert json.loads(storage.read_bytes(f"{ledger}/whirlwind-1.warc.json")) == done_before  # not redone
    for crawl in (LIVE, EXHAUSTED, DONE):
        assert json.loads(storage.read_bytes(f"{root}/_runs/{crawl}.json")) == entries[crawl]
    assert not storage.exists(f"{root}/CC-MAIN-2029-50")

    before = snapshot(s3_client, out_bucket)
    assert sentinel.run(recipe) == {"crawls": 5, "started": 0, "busy": 1, "done": 3, "exhausted": 1, "runs": {}}
    assert snapshot(s3_client, out_bucket) == before


def test_a_stale_attempt_commits_nothing(s3_server, s3_client, out_bucket, monkeypatch, capsys):
    storage = Storage(endpoint_url=s3_server)
    uri = f"s3://{out_bucket}/cc/_runs/{NEW}.json"
    lease.create(storage, uri, {"crawl": NEW, "status": "running", "attempt": 3, "owner": "tick-elsewhere",
                                "expires_at": time.time() + 3600})
    monkeypatch.setenv(LEASE_ENV, uri)
    monkeypatch.setenv(ATTEMPT_ENV, "2")
    ledger = f"s3://{out_bucket}/cc/{NEW}/fineweb/filter/_ledger/whirlwind.warc.json"
    refusal = f"attempt 2 was superseded by attempt 3 ({uri}); not committed"
    with pytest.raises(StaleAttempt, match=f"^{refusal}$".replace("(", r"\(").replace(")", r"\)")):
        commit_entry(storage, ledger, {"shard": "whirlwind.warc"})
    assert not storage.exists(ledger)

    code = pipeline.main(["--config", str(ROOT / "jobs" / "recipes" / "mixture.yaml"), "--set", f"crawl={NEW}",
                          "--set", f"root=s3://{out_bucket}/cc/{NEW}", "--set", f"storage.endpoint_url={s3_server}"])
    assert (code, capsys.readouterr().err.splitlines()[-1]) == (2, f"error: {refusal}")
    with pytest.raises(StaleAttempt, match=r"attempt 2 is not queued there \(attempt 3 running\); not started$"):
        hold(storage, uri, 2, ["jobs.curate"], ttl_s=10, heartbeat_s=1, timeout_s=10)
    assert list(snapshot(s3_client, out_bucket)) == [f"cc/_runs/{NEW}.json"]

    monkeypatch.setenv(ATTEMPT_ENV, "3")
    assert commit_entry(storage, ledger, {"shard": "whirlwind.warc"}) == {"shard": "whirlwind.warc", "attempt": 3}
    assert json.loads(storage.read_bytes(ledger)) == {"shard": "whirlwind.warc", "attempt": 3}


def test_rayjob_mode_writes_a_manifest_whose_entrypoint_runs_the_crawl(s3_server, s3_client, out_bucket, tmp_path,
                                                                         capsys):
    crawl = "CC-MAIN-2031-10"
    put_crawl(s3_client, crawl, ["whirlwind.warc.gz"])
    root, manifests, template = f"s3://{out_bucket}/cc", tmp_path / "rayjobs", tmp_path / "rayjob.yaml"
    cluster = {"rayVersion": "2.60.0", "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {
        "containers": [{"name": "ray-head", "image": "cc-refinery:test"}]}}}}
    template.write_text(yaml.safe_dump({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "pipeline"},
                                        "spec": {"entrypoint": "python -m jobs.pipeline", "backoffLimit": 2,
                                                 "ttlSecondsAfterFinished": 3600, "rayClusterSpec": cluster}}))
    recipe = schedule(s3_server, root, "source.kind=listing", f"crawls=[{crawl}]", "launch.mode=rayjob",
                      f"launch.template={template}", f"launch.manifests={manifests}")

    assert sentinel.run(recipe) == {"crawls": 1, "started": 1, "busy": 0, "done": 0, "exhausted": 0,
                                    "runs": {crawl: {"attempt": 1, "status": "queued"}}}
    name = f"cc-sentinel-{crawl.lower()}-a1"
    manifest = yaml.safe_load((manifests / f"{name}.yaml").read_text())
    uri = f"{root}/_runs/{crawl}.json"
    settings = json.dumps({"endpoint_url": s3_server, "retries": 5, "retry_backoff_s": 1.0})
    job = ["jobs.curate", "--config", str(ROOT / "jobs" / "recipes" / "fineweb.yaml"),
           "--set", f"storage.endpoint_url={s3_server}", "--set", f"input.crawl={crawl}",
           "--set", f"output.root={root}/{crawl}", "--set", "ray.num_cpus=1"]
    holder = ["--lease", uri, "--attempt", "1", "--storage", settings, "--ttl-s", "10", "--heartbeat-s", "1",
              "--timeout-s", "172800"]
    assert manifest == {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name, "labels": {
        "app.kubernetes.io/part-of": "cc-refinery", "cc-refinery/crawl": crawl.lower(), "cc-refinery/attempt": "1"}},
        "spec": {"entrypoint": shlex.join(["python", "-m", "jobs.sentinel.holder", *holder, "--", *job]),
                 "backoffLimit": 0, "ttlSecondsAfterFinished": 3600, "rayClusterSpec": cluster,
                 "runtimeEnvYAML": yaml.safe_dump({"env_vars": {LEASE_ENV: uri, ATTEMPT_ENV: "1"}}),
                 "shutdownAfterJobFinishes": True, "activeDeadlineSeconds": 3600 + 172800}}
    queued = json.loads(Storage(endpoint_url=s3_server).read_bytes(uri))
    assert (queued["status"], queued["attempt"], queued["launch"]["name"]) == ("queued", 1, name)

    assert sentinel.run(recipe)["busy"] == 1  # its lease waits start_ttl_s for the RayJob to start
    assert sorted(p.name for p in manifests.iterdir()) == [f"{name}.yaml"]

    assert holder_main(shlex.split(manifest["spec"]["entrypoint"])[3:]) == 0  # what the RayJob runs
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"crawl": crawl, "attempt": 1, "status": "done",
                                                                    "error": None}
    assert sentinel.run(recipe)["done"] == 1


def test_a_holder_stops_its_job_when_it_loses_the_lease_or_runs_out_of_time(s3_server, out_bucket):
    storage = Storage(endpoint_url=s3_server)
    uri = f"s3://{out_bucket}/cc/_runs/{NEW}.json"
    queued = {"crawl": NEW, "status": "queued", "attempt": 1, "owner": "tick-here", "expires_at": time.time() + 60}
    serve = ["http.server", "0", "--bind", "127.0.0.1"]  # a job that never ends by itself
    lease.create(storage, uri, queued)
    ended: dict = {}

    def holding():
        try:
            hold(storage, uri, 1, serve, ttl_s=6, heartbeat_s=0.5, timeout_s=60)
        except StaleAttempt as err:
            ended["error"] = str(err)

    holder = threading.Thread(target=holding)
    holder.start()
    current = wait_until(lambda: (got := lease.read(storage, uri))[0]["status"] == "running" and got,
                         "the lease marked running", every_s=0.2)
    newer = {**current[0], "attempt": 2, "owner": "tick-elsewhere"}
    lease.replace(storage, uri, newer, current[1])  # taken over, as if its heartbeats had stopped
    holder.join(GENEROUS_S)
    assert ended == {"error": f"{uri}: attempt 1 lost its lease; its job was stopped"}
    assert lease.read(storage, uri)[0] == newer

    lease.replace(storage, uri, {**queued, "attempt": 2}, lease.read(storage, uri)[1])
    final = hold(storage, uri, 2, serve, ttl_s=6, heartbeat_s=0.5, timeout_s=1)
    assert (final["status"], final["error"], final["exit_status"], final["expires_at"]) == (
        "failed", "stopped: still running after 1s", -15, 0)
    assert lease.read(storage, uri)[0] == final


def test_an_unanswered_crawl_list_fails_the_tick_in_bounded_time(tmp_path, capsys):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/collinfo.json"
        started = time.monotonic()
        code = sentinel.main(["--config", SCHEDULE, "--set", f"root={tmp_path / 'out'}", "--set", f"source.uri={url}",
                              "--set", "source.timeout_s=2",
                              "--set", f"run.recipe={ROOT / 'jobs' / 'recipes' / 'mixture.yaml'}"])
        elapsed = time.monotonic() - started
    assert (code, capsys.readouterr().err) == (
        2, f"error: cannot read the crawl list {url}: TimeoutError: no answer within 2s\n")
    assert elapsed < 60 and not (tmp_path / "out").exists()  # bounded by source.timeout_s; slack for a busy machine
