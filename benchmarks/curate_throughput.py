"""Throughput of curation on real pages: per operator, the quality chain, and the whole job as a command.

    python -m benchmarks.curate_throughput [--warc FILE] [--shards 3] [--copies 3] [--repeats 3] [--skip-peer]

Per operator: one process runs the fineweb recipe's operators over the file's batches and reports
docs/s and MB/s per core (MB of HTML for read and extract, of text after). The quality chain: the
four quality filters, ours and datatrove's, on the file's distinct extracted texts (every language); the
FineWeb2 chain (language id and three language-adapted filters, benchmarks/multilingual_chain.py), both tools.
Whole job: ``--shards`` shards, each the file ``--copies`` times over, run by the commands a user
runs, timed from outside (Python, imports, a fresh local Ray started and stopped: all included):
``python -m jobs.curate`` with 1 and 2 workers, and datatrove's LocalPipelineExecutor (same filters,
trafilatura as FineWeb ran it) on the same files; the job's ``_stats.json`` says where its time went.
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
from collections import Counter
from pathlib import Path

from benchmarks.filter_chain import chain_rows
from benchmarks.multilingual_chain import multilingual_rows
from benchmarks.real_pages import real_texts
from jobs.curate.recipe import load_recipe
from operators.io.storage import Storage
from operators.io.warc import read_warc
from operators.pipeline import Chain
from operators.registry import build

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WARC = ROOT.parent / "shared" / "data" / "real-pages-dev.warc.gz"
RECIPE = ROOT / "jobs" / "recipes" / "fineweb.yaml"


def stage_rows(warc: Path, engine: str) -> list[tuple]:
    """(stage, docs in, MB in, seconds) for reading and each operator, in one process."""
    recipe = load_recipe(str(RECIPE), [f"pipeline.extract.engine={engine}"])
    chain = Chain([build(name, params, Storage()) for name, params in recipe.steps], "filter")
    counts: Counter = Counter()
    read_seconds, docs, html_bytes = 0.0, 0, 0
    storage = Storage()
    batches = read_warc(storage.reader(str(warc), storage.stat(str(warc))), str(warc), warc.name, "unknown",
                        4_000_000, 256, counts, [])
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        read_seconds += time.perf_counter() - start
        if batch is None:
            break
        docs += batch.num_rows
        html_bytes += sum(len(b or b"") for b in batch.column("raw_html").to_pylist())
        chain(batch)
    rows = [("read (checked framing + fastwarc)", docs, html_bytes / 1e6, read_seconds)]
    for name, s in chain.stats_dict().items():
        label = f"extract ({engine})" if name == "extract" else name
        rows.append((label, s["in"], s["bytes_in"] / 1e6, s["seconds"]))
    total = sum(r[3] for r in rows)
    rows.append((f"all stages, 1 core ({engine})", docs, html_bytes / 1e6, total))
    return rows


def print_table(rows: list[tuple]) -> None:
    """Operators and the chain, one core: (stage, docs, MB, seconds) rows."""
    print(f"| {'stage, one core':<44} | {'docs':>6} | {'MB':>7} | {'seconds':>8} | docs/s/core | MB/s/core |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 9}|{'-' * 10}|{'-' * 13}|{'-' * 11}|")
    for name, docs, mb, seconds in rows:
        print(f"| {name:<44} | {docs:>6} | {mb:>7.1f} | {seconds:>8.2f} | {docs / seconds:>11.1f} | "
              f"{mb / seconds:>9.2f} |")


def make_shards(warc: Path, folder: Path, shards: int, copies: int) -> list[Path]:
    """``shards`` files, each ``copies`` copies of ``warc`` one after the other (gzip members concatenate)."""
    folder.mkdir(parents=True)
    data = warc.read_bytes() * copies
    paths = [folder / f"pages-{i}.warc.gz" for i in range(shards)]
    for path in paths:
        path.write_bytes(data)
    return paths


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "WARNING"})
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def job_runs(shards: list[Path], out: Path, skip_peer: bool, repeats: int) -> list[dict]:
    """One row per command: ours (resiliparse, the median of ``repeats`` runs: a fresh Ray's start-up varies
    by a second), ours (trafilatura) and datatrove, by workers."""
    runs = []
    for engine, workers, times in (("resiliparse", 1, repeats), ("resiliparse", 2, repeats), ("trafilatura", 2, 1)):
        tries = []
        for i in range(times):
            target = out / f"{engine}-{workers}-{i}"
            seconds, _ = timed([sys.executable, "-m", "jobs.curate", "--config", str(RECIPE),
                                "--set", f"input.paths={shards[0].parent}/*.warc.gz", "--set", f"output.root={target}",
                                "--set", f"ray.workers={workers}", "--set", f"pipeline.extract.engine={engine}"])
            stats = json.loads((target / "fineweb" / "filter" / "_stats.json").read_text())
            tries.append({"tool": f"cc-refinery ({engine})", "workers": workers, "docs": stats["read"]["read.response"],
                          "seconds": seconds, "kept": stats["rows"]["data"], "timing": stats["timing"],
                          "busy": stats["seconds"]})
        runs.append(sorted(tries, key=lambda r: r["seconds"])[len(tries) // 2])
    if not skip_peer:
        for workers in (1, 2):
            seconds, _ = timed([sys.executable, "-m", "benchmarks.datatrove_baseline", *map(str, shards),
                                "--workers", str(workers), "--no-count"])
            runs.append({"tool": "datatrove (trafilatura)", "workers": workers, "docs": runs[0]["docs"],
                         "seconds": seconds})
    return runs


def print_job_table(runs: list[dict]) -> None:
    peer = {r["workers"]: r["seconds"] for r in runs if r["tool"].startswith("datatrove")}
    print(f"| {'whole job, one command':<30} | workers | {'docs':>5} | {'seconds':>7} | docs/s/core | x datatrove | "
          "Ray start s | shards s | of which idle s | other s |")
    print(f"|{'-' * 32}|---------|-------|---------|-------------|-------------|-------------|----------|"
          "-----------------|---------|")
    for r in runs:
        ratio = f"{peer[r['workers']] / r['seconds']:.1f}" if r["workers"] in peer else ""
        cells = ["", "", "", ""]
        if "timing" in r:
            t, w = r["timing"], r["workers"]
            cells = [f"{t['ray_start_s']:.2f}", f"{t['pool_s']:.2f}", f"{t['pool_s'] - r['busy'] / w:.2f}",
                     f"{r['seconds'] - t['ray_start_s'] - t['pool_s']:.2f}"]
        print(f"| {r['tool']:<30} | {r['workers']:>7} | {r['docs']:>5} | {r['seconds']:>7.2f} | "
              f"{r['docs'] / r['seconds'] / r['workers']:>11.1f} | {ratio:>11} | {cells[0]:>11} | {cells[1]:>8} | "
              f"{cells[2]:>15} | {cells[3]:>7} |")
    ours = {r["workers"]: r["seconds"] for r in runs if r["tool"] == "cc-refinery (resiliparse)"}
    print(f"1 -> 2 workers, cc-refinery (resiliparse): whole command {ours[1] / ours[2]:.2f}x; shards phase "
          f"{runs[0]['timing']['pool_s'] / runs[1]['timing']['pool_s']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warc", type=Path, default=DEFAULT_WARC)
    parser.add_argument("--shards", type=int, default=3, help="shards for the whole-job runs")
    parser.add_argument("--copies", type=int, default=3, help="copies of --warc in each shard")
    parser.add_argument("--repeats", type=int, default=3, help="runs of our job per worker count (median shown)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run datatrove")
    args = parser.parse_args()
    if not args.warc.exists():
        raise SystemExit(f"benchmark input {args.warc} not found (it lives in ../shared/data)")
    rows = stage_rows(args.warc, "resiliparse") + stage_rows(args.warc, "trafilatura")
    texts = real_texts(args.warc)
    rows += chain_rows(str(RECIPE), texts, not args.skip_peer)
    rows += multilingual_rows(str(ROOT / "jobs" / "recipes" / "fineweb2.yaml"), texts, not args.skip_peer)
    print_table(rows)
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-"))
    try:
        runs = job_runs(make_shards(args.warc, work / "in", args.shards, args.copies), work / "out", args.skip_peer,
                        args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_job_table(runs)
    print(json.dumps({"input": str(args.warc), "shards": args.shards, "copies": args.copies,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
