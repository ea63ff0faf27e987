"""The LLM path's own ceiling: requests/s and CPU-ms per request with an endpoint that answers at once.

    python -m benchmarks.llm_plumbing [--sizes 40,400,2000] [--tokenizer DIR]

Runs ``python -m jobs.synthesize`` with the shipped rephrase-wrap recipe (four prompts) on the ``openai``
engine against a scripted OpenAI-compatible server on 127.0.0.1 (tests/scripted_llm.py, in this process,
so its CPU is not counted) that answers each request at once with its text's words reversed (a rephrase as
long as its input). Everything the job does is measured: request building and chunking with the
tokenizer, the endpoint's HTTP stage, part files, finishing shards (the output checks) and ledgers, Ray's
start and stop.

CPU time is summed over the job's whole process tree (driver, Ray's own processes, Ray workers), sampled
every 0.1 s per process (a process that exits loses at most its last 0.1 s), so the per-core figure holds
on a machine shared with other work. One run per size; the ``marginal`` row is the two biggest runs'
difference, and the ``fit`` row a least-squares line through every run, CPU-s = fixed + per request x
requests: its slope is the cost of one more request with Ray's start, worker start-ups (each Ray worker
process imports pyarrow, transformers and fastText once) and the engine's set-up taken out. Cores per GPU:
the GPU's output tokens/s (datatrove's published per-H100 rates for small models) / mean output tokens per
request (the answers counted with the tokenizer) / the requests/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.llm_driver_memory import _tokenizer
from benchmarks.real_pages import real_texts
from operators.llm.requests import token_counter
from operators.schema import conform, output_schema
from tests.scripted_llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]
GPU_TOKENS_S = (5000, 9000)
SAMPLE_S = 0.1


def answer(messages: list[dict]) -> str:
    """A rephrase as long as its input: the text's words in reverse order."""
    return " ".join(messages[-1]["content"].rsplit("Text:\n", 1)[-1].split()[::-1])


def write_input(folder: Path, docs: int, shards: int) -> None:
    texts = [t for t in real_texts() if len(t.split()) > 50]
    for s in range(shards):
        rows = [{"id": f"{s}-{i}", "text": texts[(s * docs + i) % len(texts)], "language": "en"}
                for i in range(docs // shards)]
        path = folder / "CC-MAIN-2024-22" / f"s{s}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)


class TreeCPU:
    """CPU seconds of a process and all its descendants, by kind, sampled while they live."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                with p.oneshot():
                    times, key = p.cpu_times(), (p.pid, p.create_time())
                    kind = self.seen[key][0] if key in self.seen else self._kind(p)
                self.seen[key] = (kind, times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def _kind(self, p: psutil.Process) -> str:
        if p.pid == self.root.pid:
            return "driver"
        name, cmd = p.name(), " ".join(p.cmdline())
        return "ray workers" if name.startswith("ray::") or "default_worker.py" in cmd else "ray system"

    def totals(self) -> dict[str, float]:
        out = {"driver": 0.0, "ray workers": 0.0, "ray system": 0.0}
        for kind, seconds in self.seen.values():
            out[kind] += seconds
        return out


def run(docs: int, shards: int, tokenizer: str, url: str, work: Path) -> dict:
    """One job over ``docs`` documents: requests, wall seconds and CPU seconds by kind."""
    write_input(work / f"in-{docs}", docs, shards)
    out = work / f"out-{docs}"
    sets = [f"input={work / f'in-{docs}'}", f"output={out}", "llm.engine=openai", "llm.model=scripted",
            f"llm.endpoint.url={url}", f"tokenizer={tokenizer}", "validation.check_language=false"]
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "jobs.synthesize", "--config", "jobs/recipes/rephrase-wrap.yaml",
                            *[a for s in sets for a in ("--set", s)]], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    tree = TreeCPU(job.pid)
    while job.poll() is None:
        tree.sample()
        time.sleep(SAMPLE_S)
    wall = time.perf_counter() - start
    if job.returncode != 0:
        raise SystemExit(f"synthesize failed on {docs} documents (exit {job.returncode}): "
                         f"{job.stderr.read().decode()[-2000:]}")
    stats = json.loads((out / "_stats.json").read_text())
    totals = tree.totals()
    return {"docs": docs, "requests": stats["requests"], "wall": wall, **totals, "cpu": sum(totals.values())}


def fit(rows: list[dict]) -> dict:
    """The least-squares line CPU-s = fixed + slope x requests through ``rows``, as a row of ``slope``."""
    requests, cpu = np.array([r["requests"] for r in rows], float), np.array([r["cpu"] for r in rows], float)
    slope, fixed = np.polyfit(requests, cpu, 1)
    return {"docs": f"fit over {len(rows)} runs: {fixed:.1f} CPU-s fixed + per request", "requests": 1000,
            "wall": float("nan"), "cpu": slope * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,400,2000", help="documents of each run (four prompts each)")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--tokenizer", default=None, help="a local tokenizer folder (default: trained here)")
    args = parser.parse_args()
    sizes = sorted(map(int, args.sizes.split(",")))
    if len(sizes) < 2:
        raise SystemExit("--sizes: give at least two sizes")
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-plumbing-"))
    tokenizer = args.tokenizer or _tokenizer(work)
    server = ScriptedLLM(answer)
    try:
        rows = []
        for docs in sizes:
            before = len(server.requests)
            rows.append(run(docs, args.shards, tokenizer, server.url, work))
        answers = [answer(p["messages"]) for p in server.requests[before:]]
        tokens_out = sum(token_counter(tokenizer)(answers)) / max(1, len(answers))
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    small, big = rows[-2:]
    margin = {k: big[k] - small[k] for k in ("requests", "wall", "cpu", "driver", "ray system", "ray workers")}
    margin["docs"] = f"marginal ({big['docs']} - {small['docs']})"
    print(f"mean output tokens per request: {tokens_out:.0f} (answers as long as their chunk; tokenizer {tokenizer})")
    print("| docs | requests | wall s | requests/s | CPU-s total (driver / Ray system / Ray workers) | "
          "CPU-ms per request | requests/s per core | cores per GPU at 5,000 / 9,000 output tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in (*rows, margin, fit(rows)):
        kinds = f" ({row['driver']:.1f} / {row['ray system']:.1f} / {row['ray workers']:.1f})" if "driver" in row \
            else ""
        per_core = row["requests"] / row["cpu"]
        cores = " / ".join(f"{tps / tokens_out / per_core:.2f}" for tps in GPU_TOKENS_S)
        wall = "—" if np.isnan(row["wall"]) else f"{row['wall']:.1f}"
        rate = "—" if np.isnan(row["wall"]) else f"{row['requests'] / row['wall']:.0f}"
        print(f"| {row['docs']} | {row['requests']} | {wall} | {rate} | {row['cpu']:.1f}{kinds} | "
              f"{1000 * row['cpu'] / row['requests']:.2f} | {per_core:.0f} | {cores} |")


if __name__ == "__main__":
    main()
