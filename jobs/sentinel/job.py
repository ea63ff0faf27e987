"""The new-crawl sentinel: one tick starts the configured job on each Common Crawl crawl not yet done.

    python -m jobs.sentinel --config jobs/recipes/schedule.yaml [--set key=value ...]

A tick reads the crawl list (``collinfo.json``, or the ``crawl-data/`` folders of the bucket), keeps the
crawls the recipe allows (``crawls``, ``since``), oldest first, and compares them with the run registry
``<root>/_runs/<crawl>.json``. An entry is also the crawl's lease: a tick claims a new crawl by creating
its entry (create-if-absent), and a failed one, or one whose lease expired, by replacing the entry it
read (compare-and-swap) with the attempt raised, up to ``lease.max_attempts``; a live lease is skipped.
At most ``max_new_per_tick`` runs start. A run writes under ``<root>/<crawl>/`` and resumes on its shard
ledgers; ``jobs/sentinel/launch.py`` holds its lease, in the tick (``local``), as a Ray job (``submit``) or
in a KubeRay RayJob (``rayjob``: a manifest is written for ``kubectl apply``). A tick with nothing to
start writes nothing; an unreachable crawl list fails it within ``source.timeout_s``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Annotated, Literal

import requests
import yaml
from pydantic import Field, model_validator

from jobs.common.cli import job_main
from jobs.common.recipe import StorageConfig, job_field
from jobs.sentinel.launch import hold, holder_args, stamp
from operators.io import lease
from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV, StaleAttempt
from operators.io.listing import CRAWL_RE
from operators.io.storage import Storage, is_s3, join, split_s3
from operators.params import Strict

log = logging.getLogger("cc_refinery.sentinel")
COLLINFO = "https://index.commoncrawl.org/collinfo.json"
CC_LISTING = "s3://commoncrawl/crawl-data/"
CRAWL_ID = r"^CC-MAIN-\d{4}-\d{2}$"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")  # Ray job states that end


class CrawlSource(Strict):
    kind: Literal["collinfo", "listing"] = "collinfo"
    uri: str | None = Field(None, description="collinfo: an https://, s3:// or local JSON list (default: "
                                              f"{COLLINFO}); listing: an s3:// prefix (default: {CC_LISTING})")
    timeout_s: float = Field(30, gt=0, description="for the whole read; past it the tick fails")

    @model_validator(mode="after")
    def _listing_on_s3(self):
        if self.kind == "listing" and self.uri is not None and not (is_s3(self.uri) and self.uri.endswith("/")):
            raise ValueError(f"source.uri: a listing is an s3:// prefix ending in '/', not {self.uri!r}")
        return self


class LeaseConfig(Strict):
    ttl_s: float = Field(600, gt=0, description="a running run's lease lasts this long past its last heartbeat")
    heartbeat_s: float = Field(60, gt=0)
    start_ttl_s: float = Field(3600, gt=0, description="how long a launched run may take to start and take it")
    max_attempts: int = Field(3, ge=1, description="a crawl that failed this many times is left alone")

    @model_validator(mode="after")
    def _renewed_in_time(self):
        if self.heartbeat_s * 3 > self.ttl_s:
            raise ValueError(f"lease.heartbeat_s: {self.heartbeat_s:g} must be at most a third of ttl_s")
        return self


class RunConfig(Strict):
    """The job each new crawl's run is: a module run as ``python -m <module> --config <recipe> --set ...``."""

    module: str = Field("jobs.pipeline", pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
    recipe: str = "jobs/recipes/mixture.yaml"
    set: list[str] = Field(default_factory=lambda: ["crawl={crawl}", "root={root}"],
                           description="--set overrides; {crawl}, {root} (<root>/<crawl>), {attempt} filled in")
    timeout_s: float = Field(86400, gt=0, description="a run still going after this is stopped and failed")


class LaunchConfig(Strict):
    mode: Literal["local", "submit", "rayjob"] = "local"
    address: str | None = Field(None, description="submit: the Ray dashboard, http://<head>:8265 "
                                                  "(default: RAY_ADDRESS)")
    working_dir: str = Field(".", description="submit: the code shipped with the job")
    excludes: list[str] = Field(default_factory=lambda: [".git", ".venv", "output"])
    wait: bool = Field(True, description="submit: wait for the job to end")
    poll_s: float = Field(10, gt=0)
    template: str = Field("clusters/build/kuberay/rayjob-pipeline.yaml",
                          description="rayjob: a RayJob manifest whose spec (its cluster) each run's RayJob copies")
    manifests: str = Field("./rayjobs", description="rayjob: where manifests are written, for kubectl apply -f")


class Schedule(Strict):
    job: Literal["sentinel"] = job_field("sentinel")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$", description="names Ray jobs and RayJobs")
    root: str = Field(description="registry in <root>/_runs/, each crawl's run in <root>/<crawl>/")
    source: CrawlSource = Field(default_factory=CrawlSource)
    since: str | None = Field(None, pattern=CRAWL_ID, description="ignore crawls older than this one")
    crawls: list[Annotated[str, Field(pattern=CRAWL_ID)]] = Field(default_factory=list,
                                                                  description="only these (default: all)")
    max_new_per_tick: int = Field(1, ge=1)
    lease: LeaseConfig = Field(default_factory=LeaseConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)


def _within(seconds: float, fn):
    """``fn()``, or TimeoutError once ``seconds`` pass (the thread is left behind, as a daemon)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as err:  # noqa: BLE001 - re-raised below, in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _fetch(source: CrawlSource, uri: str, storage: Storage) -> list[str]:
    if source.kind == "listing":
        bucket, prefix = split_s3(uri)
        pages = lease.s3_client(storage, source.timeout_s).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/")
        return [p["Prefix"][len(prefix):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
    if uri.startswith(("http://", "https://")):
        response = requests.get(uri, timeout=source.timeout_s)
        response.raise_for_status()
        entries = response.json()
    else:
        entries = json.loads(storage.read_bytes(uri))
    if not isinstance(entries, list):
        raise ValueError("not a JSON list of crawls")
    return [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]


def list_crawls(source: CrawlSource, storage: Storage) -> list[str]:
    """The crawl ids the source lists, sorted (oldest first); RuntimeError (one line) if it cannot be read."""
    uri = source.uri or (COLLINFO if source.kind == "collinfo" else CC_LISTING)
    try:
        found = _within(source.timeout_s, lambda: _fetch(source, uri, storage))
    except Exception as err:  # noqa: BLE001 - any failure to read the list ends the tick with its reason
        reason = (str(err).strip().splitlines() or [""])[0]
        raise RuntimeError(f"cannot read the crawl list {uri}: {type(err).__name__}: {reason}") from None
    return sorted({c for c in found if CRAWL_RE.fullmatch(c)})


def select(schedule: Schedule, crawls: list[str]) -> list[str]:
    return [c for c in crawls if (not schedule.crawls or c in schedule.crawls)
            and (schedule.since is None or c >= schedule.since)]


def run_name(schedule: Schedule, crawl: str, attempt: int) -> str:
    """The Ray job / RayJob name of one attempt (DNS-1123)."""
    return f"{schedule.name}-{crawl.lower()}-a{attempt}"


def claim(storage: Storage, schedule: Schedule, crawl: str, owner: str) -> tuple[str, dict | None]:
    """(``started``, entry) when this tick claimed the crawl, else (``done``, ``busy`` or ``exhausted``, None)."""
    uri = join(schedule.root, "_runs", f"{crawl}.json")
    now = time.time()
    current = lease.read(storage, uri)
    if current is None:
        attempt, history = 1, []
    else:
        old = current[0]
        if old["status"] == "done":
            return "done", None
        if old["status"] in ("queued", "running") and old["expires_at"] > now:
            return "busy", None
        if old["attempt"] >= schedule.lease.max_attempts:
            return "exhausted", None
        attempt = old["attempt"] + 1
        history = [*old.get("history", []), {k: old[k] for k in ("attempt", "status", "owner", "expires_at", "error")
                                              if k in old}]
    doc = {"crawl": crawl, "status": "queued", "attempt": attempt, "owner": owner,
           "expires_at": now + schedule.lease.start_ttl_s, "claimed_at": stamp(), "updated_at": stamp(),
           "output": join(schedule.root, crawl), "history": history,
           "launch": {"mode": schedule.launch.mode, "name": run_name(schedule, crawl, attempt)}}
    try:
        if current is None:
            lease.create(storage, uri, doc)
        else:
            lease.replace(storage, uri, doc, current[1])
    except lease.Conflict:
        return "busy", None  # another tick claimed it between our read and write
    return "started", doc


def job_args(job: RunConfig, crawl: str, root: str, attempt: int) -> list[str]:
    """``<module> --config <recipe> --set ...`` for one crawl's run."""
    args = [job.module, "--config", job.recipe]
    for assignment in job.set:
        args += ["--set", assignment.replace("{crawl}", crawl).replace("{root}", root).replace("{attempt}",
                                                                                                str(attempt))]
    return args


def _submit(schedule: Schedule, storage: Storage, uri: str, doc: dict, entrypoint: str, env: dict) -> dict:
    """Submit the run as a Ray job; with ``launch.wait``, wait (bounded) and return its entry as it ended."""
    from ray.job_submission import JobSubmissionClient

    name = doc["launch"]["name"]
    client = JobSubmissionClient(schedule.launch.address)
    client.submit_job(entrypoint=entrypoint, submission_id=name, runtime_env={
        "working_dir": schedule.launch.working_dir, "excludes": schedule.launch.excludes, "env_vars": env})
    log.info("%s: submitted Ray job %s", doc["crawl"], name)
    if not schedule.launch.wait:
        return doc
    deadline = time.monotonic() + schedule.lease.start_ttl_s + schedule.run.timeout_s
    while (status := client.get_job_status(name).value) not in TERMINAL:
        if time.monotonic() > deadline:
            client.stop_job(name)
            status = "not ended in time, stopped"
            break
        time.sleep(schedule.launch.poll_s)
    entry, version = lease.read(storage, uri)
    if entry["attempt"] == doc["attempt"] and entry["status"] in ("queued", "running"):
        message = client.get_job_info(name).message or ""
        entry = {**entry, "status": "failed", "expires_at": 0, "updated_at": stamp(),
                 "error": f"Ray job {name} {status} before recording its end: {message}".strip()}
        lease.replace(storage, uri, entry, version)
    return entry


def _manifest(schedule: Schedule, storage: Storage, doc: dict, entrypoint: str, env: dict) -> dict:
    """Write a KubeRay RayJob for the run (``template``'s spec); the lease waits ``start_ttl_s`` for it to start.
    KubeRay does not retry it (``backoffLimit: 0``): a retry is a new attempt, the sentinel's."""
    with open(schedule.launch.template) as f:
        manifest = yaml.safe_load(f)
    name = doc["launch"]["name"]
    manifest["metadata"] = {"name": name, "labels": {"app.kubernetes.io/part-of": "cc-refinery",
                                                     "cc-refinery/crawl": doc["crawl"].lower(),
                                                     "cc-refinery/attempt": str(doc["attempt"])}}
    manifest["spec"].update(entrypoint=entrypoint, runtimeEnvYAML=yaml.safe_dump({"env_vars": env}),
                            shutdownAfterJobFinishes=True, backoffLimit=0,
                            activeDeadlineSeconds=int(schedule.lease.start_ttl_s + schedule.run.timeout_s))
    path = join(schedule.launch.manifests, f"{name}.yaml")
    storage.write_text(path, yaml.safe_dump(manifest, sort_keys=False))
    log.info("%s: wrote %s (kubectl apply -f it)", doc["crawl"], path)
    return doc


def launch(schedule: Schedule, storage: Storage, doc: dict) -> dict:
    """Start the claimed run; return its registry entry as this tick leaves it."""
    uri = join(schedule.root, "_runs", f"{doc['crawl']}.json")
    args = job_args(schedule.run, doc["crawl"], doc["output"], doc["attempt"])
    lease_cfg = schedule.lease
    if schedule.launch.mode == "local":
        return hold(storage, uri, doc["attempt"], args, lease_cfg.ttl_s, lease_cfg.heartbeat_s,
                    schedule.run.timeout_s)
    entrypoint = shlex.join(["python", "-m", "jobs.sentinel.holder", *holder_args(
        uri, doc["attempt"], storage, lease_cfg.ttl_s, lease_cfg.heartbeat_s, schedule.run.timeout_s), "--", *args])
    env = {LEASE_ENV: uri, ATTEMPT_ENV: str(doc["attempt"])}  # the job's Ray workers check it too
    if schedule.launch.mode == "submit":
        return _submit(schedule, storage, uri, doc, entrypoint, env)
    return _manifest(schedule, storage, doc, entrypoint, env)


def _check_files(schedule: Schedule) -> None:
    """The recipe (and template) a launch reads here or ships, before any crawl is claimed."""
    mode = schedule.launch.mode
    path = {"local": schedule.run.recipe, "submit": os.path.join(schedule.launch.working_dir, schedule.run.recipe),
            "rayjob": schedule.launch.template}[mode]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (launch.mode={mode})")


def run(schedule: Schedule) -> dict:
    """One tick: claim and launch up to ``max_new_per_tick`` crawls; RuntimeError if any started run failed."""
    _check_files(schedule)
    storage = Storage(**schedule.storage.model_dump())
    crawls = select(schedule, list_crawls(schedule.source, storage))
    owner = f"tick-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    counts: Counter = Counter()
    runs: dict[str, dict] = {}
    for crawl in crawls:
        if counts["started"] == schedule.max_new_per_tick:
            break
        outcome, doc = claim(storage, schedule, crawl, owner)
        counts[outcome] += 1
        if doc is None:
            continue
        log.info("%s: attempt %d claimed (%s)", crawl, doc["attempt"], schedule.launch.mode)
        try:
            entry = launch(schedule, storage, doc)
        except StaleAttempt as err:
            entry = {**doc, "status": "stale", "error": str(err)}
        runs[crawl] = {k: entry[k] for k in ("attempt", "status", "error") if k in entry}
    stats = {"crawls": len(crawls), **{k: counts[k] for k in ("started", "busy", "done", "exhausted")}, "runs": runs}
    log.info("tick: %s", json.dumps(stats))
    failed = [f"{c} attempt {r['attempt']}: {r['error']}" for c, r in runs.items()
              if r["status"] in ("failed", "stale")]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {'; '.join(failed)}")
    return stats


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.sentinel", Schedule, run,
                    ("crawls", "started", "busy", "done", "exhausted", "runs"), argv)
