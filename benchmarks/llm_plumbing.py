"""The LLM path's own ceiling: requests/s and CPU-ms per request with an endpoint that answers at once.

    python -m benchmarks.llm_plumbing [--docs 400] [--small 40] [--tokenizer DIR]

Runs ``python -m jobs.synthesize`` with the shipped rephrase-wrap recipe (four prompts) on the ``openai``
engine against a scripted OpenAI-compatible server on 127.0.0.1 (tests/scripted_llm.py, in this process,
so its CPU is not counted) that answers each request at once with its text's words reversed (a rephrase as
long as its input). Everything the job does is measured: request building and chunking with the
tokenizer, the endpoint's HTTP stage, part files, finishing shards and ledgers, Ray's start and stop.

CPU time is summed over the job's whole process tree (driver, Ray's own processes, Ray workers), sampled
every 0.1 s per process (a process that exits loses at most its last 0.1 s), so the per-core figure holds
on a machine shared with other work. Two sizes are run; the ``marginal`` row is their difference, the
cost of one more request without Ray's start and the engine's set-up (noisy where other work shares the
machine: a start-up's CPU varies by more than the small run's requests cost); the ``steady state`` row counts
only the CPU spent while the server answered the big run's middle 80 % of requests. Cores per GPU: the GPU's output
tokens/s (datatrove's published per-H100 rates for small models) / mean output tokens per request (the
answers counted with the tokenizer) / the marginal requests/s per core.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
        self.series: list[tuple[float, float]] = []  # (monotonic time, CPU seconds of the tree so far)

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
        self.series.append((time.monotonic(), sum(seconds for _, seconds in self.seen.values())))

    def between(self, start: float, end: float) -> float:
        """CPU seconds the tree spent from ``start`` to ``end`` (monotonic times), from the nearest samples."""
        at = [t for t, _ in self.series]
        first, last = bisect.bisect_left(at, start), bisect.bisect_right(at, end) - 1
        return self.series[last][1] - self.series[first][1] if last > first else 0.0

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


def run(docs: int, shards: int, tokenizer: str, url: str, work: Path, answered: list[float]) -> dict:
    """One job over ``docs`` documents: requests, wall seconds and CPU seconds by kind, and the steady state:
    CPU seconds and requests between the times the server answered the first and the last tenth of the
    requests (``answered``, its answer times), when every stage is running and none is starting or stopping."""
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
    times = sorted(answered)
    start, end = times[len(times) // 10], times[len(times) * 9 // 10]
    steady = {"docs": f"steady state of {docs}", "requests": len(times) * 9 // 10 - len(times) // 10,
              "wall": end - start, "cpu": tree.between(start, end)}
    answered.clear()
    return {"docs": docs, "requests": stats["requests"], "wall": wall, **tree.totals()}, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--small", type=int, default=40, help="documents of the run subtracted for the margin")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--tokenizer", default=None, help="a local tokenizer folder (default: trained here)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-plumbing-"))
    tokenizer = args.tokenizer or _tokenizer(work)
    answered: list[float] = []
    server = ScriptedLLM(lambda messages: answered.append(time.monotonic()) or answer(messages))
    try:
        small, _ = run(args.small, args.shards, tokenizer, server.url, work, answered)
        before = len(server.requests)
        big, steady = run(args.docs, args.shards, tokenizer, server.url, work, answered)
        answers = [answer(p["messages"]) for p in server.requests[before:]]
        tokens_out = sum(token_counter(tokenizer)(answers)) / max(1, len(answers))
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    margin = {k: big[k] - small[k] for k in big}
    margin["docs"] = f"marginal ({big['docs']} - {small['docs']})"
    print(f"mean output tokens per request: {tokens_out:.0f} (answers as long as their chunk; tokenizer {tokenizer})")
    print("| docs | requests | wall s | requests/s | CPU-s total (driver / Ray system / Ray workers) | "
          "CPU-ms per request | requests/s per core | cores per GPU at 5,000 / 9,000 output tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in (small, big, margin, steady):
        cpu = row["cpu"] if "cpu" in row else row["driver"] + row["ray system"] + row["ray workers"]
        kinds = "" if "cpu" in row else f" ({row['driver']:.1f} / {row['ray system']:.1f} / {row['ray workers']:.1f})"
        per_core = row["requests"] / cpu
        cores = " / ".join(f"{tps / tokens_out / per_core:.2f}" for tps in GPU_TOKENS_S)
        print(f"| {row['docs']} | {row['requests']} | {row['wall']:.1f} | {row['requests'] / row['wall']:.0f} | "
              f"{cpu:.1f}{kinds} | {1000 * cpu / row['requests']:.2f} | {per_core:.0f} | {cores} |")


if __name__ == "__main__":
    main()
