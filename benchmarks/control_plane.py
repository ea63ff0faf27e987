"""A whole crawl's control plane: driver time, memory and S3 requests to plan, to check the ledger on a
re-run and to hand out shards; then S3 requests per shard of each stage and what they cost for a crawl.

    python -m benchmarks.control_plane [--shards 90000] [--measured 5000] [--handout 2000] [--stages 2,6]

Everything runs against a real S3 endpoint on 127.0.0.1 (moto's standalone server) through a proxy that
counts requests (``tests/faults.py`` ``CountingProxy``). Each phase runs in a fresh driver process, which
reports its wall time, CPU time and peak RSS during the phase (sampled every 10 ms):

* plan: a crawl's ``warc.paths.gz`` of ``--shards`` lines read and turned into units, as curation plans.
  Measured at the full size (one object).
* ledger check on a re-run: ``--measured`` finished shards (inputs and ledger entries on the server), the
  ledger listed and checked as curation does (``to_do``); and, beside it, the check as it was before
  (a GET of every entry and a HEAD of every input). Extrapolated to ``--shards`` by the measured rate.
* hand-out: ``--handout`` shards through curation's actor pool (``ShardPool``, 2 actors that return at
  once), extrapolated.

The second table runs the mixture (``python -m jobs.pipeline``: curate, dedup, quality, three synthesis
stages on a scripted endpoint, tiny local classifiers) on the two shard counts of ``--stages`` and takes
requests per shard as the difference over the difference in shards (what a run costs regardless of its
size drops out). A stage's requests are those from its lock's first request to the lock's removal.
Small shards (10 pages): a 1 GB shard's outputs add multipart requests (about one PUT per 10 MB written).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRAWL = "CC-MAIN-2099-01"
BUCKET = "control-plane"
# S3 Standard, us-east-1, list prices as published on aws.amazon.com/s3/pricing (checked 2026-12-03)
PUT_CLASS_PER_1000 = 0.005  # PUT, COPY, POST, LIST
GET_CLASS_PER_1000 = 0.0004  # GET, HEAD (and the rest); DELETE is free
STAGES = ["filter", "dedup", "quality", "synth/rephrase-nemotron", "synth/rewire", "synth/tpt"]


def warc_key(i: int) -> str:
    return f"crawl-data/{CRAWL}/segments/{i // 1000}/warc/CC-MAIN-{i:06d}.warc.gz"


def phase_main(phase: str, endpoint: str, shards: int, measured: int) -> dict:
    """Run one phase in this (fresh) process; return seconds, peak RSS and the RSS before it."""
    from jobs.curate.shard_plan import plan_units
    from operators.io.ledger import THREADS, _changed, to_do
    from operators.io.listing import resolve_inputs, shard_names
    from operators.io.storage import Storage

    storage = Storage(endpoint_url=endpoint)
    ledger = f"s3://{BUCKET}/out/_ledger"
    finish = None
    # before the phase: the measured shards' plan, and a warm-up (clients, threads, imports, Ray)
    if phase.startswith("check"):
        units = shard_names(resolve_inputs(storage, [], CRAWL, "warc", f":{measured}", None))
        warm = dict(list(units.items())[:10])
        to_do(storage, warm, lambda n: f"{ledger}/{n}.json", set(warm))
        storage.listdir(f"s3://{BUCKET}/warm-up")
    if phase == "plan":
        storage.stat(f"s3://commoncrawl/crawl-data/{CRAWL}/warc.paths.gz")

        def work() -> None:
            assert len(plan_units(storage, shard_names(resolve_inputs(storage, [], CRAWL, "warc", None, None)),
                                  set(), lambda: 64, None)) == shards
    elif phase == "check":
        def work() -> None:
            recorded = {n.removesuffix(".json") for n in storage.listdir(ledger)}
            assert to_do(storage, units, lambda n: f"{ledger}/{n}.json", recorded) == ([], [])
    elif phase == "check-per-shard":  # the check before: every entry read, every input asked for
        def work() -> None:
            recorded = {n.removesuffix(".json") for n in storage.listdir(ledger)}
            with ThreadPoolExecutor(THREADS) as pool:
                assert not any(pool.map(lambda n: _changed(storage, f"{ledger}/{n}.json", units[n]), recorded))
    else:
        work, finish = handout(measured)
    before, cpu = rss_mib(), time.process_time()
    sampler = PeakRss()
    start = time.perf_counter()
    work()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {"seconds": seconds, "cpu": cpu, "rss_before": before, "rss_peak": sampler.stop()}
    if finish:
        finish()
    return result


class PeakRss:
    """The highest resident memory of this process, sampled every 10 ms until ``stop()``."""

    def __init__(self):
        self.peak, self.done = rss_mib(), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peak, rss_mib())


class Echo:
    """A worker that answers at once: the pool's own cost per shard."""

    def run(self, **item) -> dict:
        return {"shard": item["shard"], "rows": {"data": 0}}


def handout(count: int):
    """(hand ``count`` shards to 2 actors that answer at once, shut Ray down): a local Ray, its actors up and a
    warm-up of 100 shards done first."""
    import ray

    from jobs.curate.shard_pool import ShardPool

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = ShardPool(Echo, (), 2)

    def run(n: int) -> None:
        assert sum(1 for _ in pool.run([{"uri": f"u{i}", "shard": f"s{i}", "part": (0, 1)} for i in range(n)])) == n

    run(100)
    return lambda: run(count), ray.shutdown


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_phase(phase: str, endpoint: str, shards: int, measured: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.control_plane", "--phase", phase, "--endpoint", endpoint,
                          "--shards", str(shards), "--measured", str(measured)], cwd=ROOT, capture_output=True,
                         text=True, timeout=3600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if out.returncode:
        raise RuntimeError(f"phase {phase} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fill(client, shards: int, measured: int, body: bytes) -> None:
    """The crawl listing of ``shards`` lines, its first ``measured`` inputs, then (a second later) their
    ledger entries, as a first run leaves them."""
    for bucket in ("commoncrawl", BUCKET):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket="commoncrawl", Key=f"crawl-data/{CRAWL}/warc.paths.gz",
                      Body=gzip.compress("\n".join(warc_key(i) for i in range(shards)).encode()))
    with ThreadPoolExecutor(8) as pool:
        etags = list(pool.map(lambda i: client.put_object(Bucket="commoncrawl", Key=warc_key(i), Body=body)["ETag"],
                              range(measured)))
    time.sleep(1.1)

    def entry(i: int) -> None:
        name = warc_key(i).rsplit("/", 1)[-1].removesuffix(".gz")
        body_json = {"input": {"size": len(body), "etag": etags[i]}, "outputs": {}}
        client.put_object(Bucket=BUCKET, Key=f"out/_ledger/{name}.json", Body=json.dumps(body_json).encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(entry, range(measured)))


def requests_of(counts: dict) -> str:
    return " ".join(f"{k} {v:,.0f}" for k, v in counts.items() if v)


def control_plane(endpoint: str, proxy, shards: int, measured: int, handout_shards: int) -> list[list[str]]:
    rows = []
    plan_scale = {"plan": (shards, 1), "check": (measured, shards / measured),
                  "check-per-shard": (measured, shards / measured)}
    if handout_shards:
        plan_scale["handout"] = (handout_shards, shards / handout_shards)
    labels = {"plan": "plan (crawl listing to units)", "check": "ledger check on a re-run (listings)",
              "check-per-shard": "ledger check, the way before (GET + HEAD per shard)",
              "handout": "hand-out (ShardPool, 2 actors answering at once)"}
    # requests made before the phase (see phase_main): the listing's GET; the warm-up's LISTs and GETs, HEADs
    warm_up = {"plan": {"HEAD": 1}, "check": {"GET": 1, "LIST": 3}, "check-per-shard": {"GET": 1, "LIST": 3},
               "handout": {}}
    for phase, (n, scale) in plan_scale.items():
        proxy.reset()
        result = run_phase(phase, proxy.url, shards, n)
        counts = proxy.counts()
        counts = {k: v - warm_up[phase].get(k, 0) for k, v in counts.items()}
        growth = result["rss_peak"] - result["rss_before"]
        rows.append([labels[phase], f"{n:,}", f"{result['seconds']:.2f}", f"{result['cpu']:.2f}",
                     f"{result['rss_peak']:.0f}", f"{growth:.1f}", requests_of(counts), "measured"])
        if scale != 1:
            rows.append([labels[phase], f"{shards:,}", f"{result['seconds'] * scale:.1f}",
                         f"{result['cpu'] * scale:.1f}", f"{result['rss_before'] + growth * scale:.0f}",
                         f"{growth * scale:.1f}",
                         requests_of({k: v * scale for k, v in counts.items()}), "extrapolated"])
    return rows


def stage_counts(log: list[tuple[str, str]], run: str) -> dict[str, dict[str, int]]:
    """Requests of each stage (from its lock's first request to the lock's removal) and of the rest."""
    found = {stage: dict.fromkeys(("GET", "PUT", "HEAD", "LIST", "POST", "DELETE"), 0) for stage in [*STAGES, "other"]}
    current = "other"
    for kind, path in log:
        lock = next((s for s in STAGES if path == f"{run}/{s}/_lock.json"), None)
        if lock and current == "other":
            current = lock
        found[current][kind] += 1
        if lock and kind == "DELETE":
            current = "other"
    return found


def pipeline_requests(client, proxy, sizes: list[int], work: Path) -> dict[int, dict]:
    """Run the mixture through the proxy on each size; the requests of each stage per run."""
    from tests.conftest import ENGLISH, html_page, tiny_bert, train_classifier, write_warc
    from tests.scripted_llm import ScriptedLLM
    from tests.scripted_mixture import answer, stage_sets

    class Folders:
        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(prefix=name, dir=work))

    bert, fasttext = tiny_bert.__wrapped__(Folders()), train_classifier(Folders().mktemp("ft"))
    server, results = ScriptedLLM(answer), {}
    try:
        for size in sizes:
            for shard in range(size):
                pages = [{"url": f"https://town{shard}-{i}.example.org/p", "body": html_page(
                    f"T{i}", [ENGLISH[(shard + i + j) % len(ENGLISH)] for j in range(4)])} for i in range(10)]
                warc = write_warc(work / f"s{shard}.warc.gz", pages)
                client.upload_file(str(warc), BUCKET, f"in{size}/s{shard}.warc.gz")
            sets = [f"root=s3://{BUCKET}/out{size}", f"input=[s3://{BUCKET}/in{size}/*.warc.gz]",
                    f"storage.endpoint_url={proxy.url}",
                    *stage_sets(server.url, bert, fasttext, nemotron=("routing.threshold=0",),
                                rewire=("select={column: quality_bucket, min: 0}",))]
            proxy.reset()
            job = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--config", "jobs/recipes/mixture.yaml",
                                  *[a for s in sets for a in ("--set", s)]], cwd=ROOT, capture_output=True, text=True,
                                 timeout=3600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
            if job.returncode:
                raise RuntimeError(f"pipeline on {size} shards failed: {job.stderr[-3000:]}")
            results[size] = stage_counts(list(proxy.log), f"{BUCKET}/out{size}/mixture")
    finally:
        server.close()
    return results


def cost(per_shard: dict[str, float], shards: int) -> float:
    put = per_shard["PUT"] + per_shard["POST"] + per_shard["LIST"]
    get = per_shard["GET"] + per_shard["HEAD"]
    return shards * (put * PUT_CLASS_PER_1000 + get * GET_CLASS_PER_1000) / 1000


def request_rows(results: dict[int, dict], shards: int) -> list[list[str]]:
    (small, a), (large, b) = sorted(results.items())
    rows = []
    for stage in [*STAGES, "other"]:
        per = {k: (b[stage][k] - a[stage][k]) / (large - small) for k in a[stage]}
        fixed = {k: a[stage][k] - per[k] * small for k in a[stage]}
        rows.append([stage, *(f"{per[k]:.2f}" for k in ("GET", "PUT", "HEAD", "LIST", "POST", "DELETE")),
                     f"{cost(per, shards):.2f}", requests_of(fixed) or "-"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=90_000, help="shards of the crawl (listing lines)")
    parser.add_argument("--measured", type=int, default=5_000, help="finished shards on the server for the check")
    parser.add_argument("--handout", type=int, default=2_000, help="shards handed out through the pool (0 skips)")
    parser.add_argument("--stages", default="2,6", help="two shard counts for the per-stage requests ('' skips)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase_main(args.phase, args.endpoint, args.shards, args.measured)))
        return

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.conftest import html_page, write_warc
    from tests.faults import CountingProxy

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    proxy = CountingProxy(endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        with tempfile.TemporaryDirectory(prefix="control-plane-") as tmp:
            work = Path(tmp)
            body = write_warc(work / "w.warc.gz", [{"url": "https://a.example.org/", "body": html_page("A", ["a"])}])
            fill(client, args.shards, args.measured, body.read_bytes())
            rows = control_plane(endpoint, proxy, args.shards, args.measured, args.handout)
            print(f"## Control plane at {args.shards:,} shards (driver process; S3: moto on 127.0.0.1)\n")
            print(table(["phase", "shards", "seconds", "driver CPU s", "driver peak RSS MiB", "RSS growth MiB",
                         "S3 requests", "how"], rows))
            if args.stages:
                sizes = [int(s) for s in args.stages.split(",")]
                results = pipeline_requests(client, proxy, sizes, work)
                print(f"\n## S3 requests per shard of each stage (mixture on {sizes[0]} and {sizes[1]} shards of 10 "
                      f"pages: the difference per shard), and per crawl of {args.shards:,} shards\n")
                print(table(["stage", "GET", "PUT", "HEAD", "LIST", "POST", "DELETE", "$ per crawl",
                             "per run, any size"], request_rows(results, args.shards)))
                print(f"\nS3 Standard us-east-1 list prices (checked 2026-12-03): PUT/COPY/POST/LIST "
                      f"${PUT_CLASS_PER_1000} per 1,000; GET/HEAD ${GET_CLASS_PER_1000} per 1,000; DELETE free.")
    finally:
        proxy.close()
        server.stop()


if __name__ == "__main__":
    main()
