"""Throughput of read + extract + filter on real pages: per stage, and the whole job on 1 and 2 workers.

    python -m benchmarks.curate_throughput [--warc FILE] [--copies 4] [--skip-peer]

Per stage: one process runs the fineweb recipe's operators over the file's batches and reports
docs/s and MB/s per core (MB of HTML for read and extract, of text after). The quality chain: the
four quality filters, ours and datatrove's, on the file's extracted texts (x3, every language). Whole job: the file is
copied ``--copies`` times as shards and the curation job runs on local Ray with 1 and 2 workers.
The peer (datatrove, same filters, trafilatura as FineWeb ran it) runs on the same shards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.filter_chain import chain_rows
from benchmarks.real_pages import real_texts
from jobs.config import load_recipe
from jobs.curate import run
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


def job_rows(shards: list[Path], out: Path, engine: str, html_mb: float) -> list[tuple]:
    rows = []
    for workers in (1, 2):
        target = out / f"{engine}-{workers}"
        recipe = load_recipe(str(RECIPE), [f"input.paths={shards[0].parent}/*.warc.gz",
                                           f"output.root={target}", f"ray.workers={workers}",
                                           f"pipeline.extract.engine={engine}"])
        start = time.perf_counter()
        stats = run(recipe)
        seconds = time.perf_counter() - start
        docs = stats["read"].get("read.response", 0)
        rows.append((f"cc-refinery job ({engine}), {workers} worker(s)", docs, html_mb * len(shards),
                     seconds, workers))
        # fixed cost: the wall time the workers were not processing shards (Ray, actors, children, models)
        startup = seconds - stats["seconds"] / workers
        rows.append((f"  of which start-up and idle, {workers} worker(s)", None, None, startup, workers))
    return rows


def peer_rows(shards: list[Path], html_mb: float) -> list[tuple]:
    from benchmarks.datatrove_baseline import run_baseline

    rows = []
    for workers in (1, 2):
        result = run_baseline([str(s) for s in shards], workers=workers)
        rows.append((f"datatrove (trafilatura), {workers} worker(s)", result["docs"],
                     html_mb * len(shards), result["seconds"], workers))
    return rows


def print_table(rows: list[tuple]) -> None:
    print(f"| {'stage':<44} | {'docs':>6} | {'MB':>7} | {'seconds':>8} | {'docs/s/core':>11} | {'MB/s/core':>9} |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 9}|{'-' * 10}|{'-' * 13}|{'-' * 11}|")
    for name, docs, mb, seconds, *cores in rows:
        per_core = seconds * (cores[0] if cores else 1)
        if docs is None:  # a share of a job's wall time, not a throughput
            print(f"| {name:<44} | {'':>6} | {'':>7} | {seconds:>8.2f} | {'':>11} | {'':>9} |")
            continue
        print(f"| {name:<44} | {docs:>6} | {mb:>7.1f} | {seconds:>8.2f} | {docs / per_core:>11.1f} | "
              f"{mb / per_core:>9.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warc", type=Path, default=DEFAULT_WARC)
    parser.add_argument("--copies", type=int, default=8, help="shards for the whole-job runs")
    parser.add_argument("--skip-peer", action="store_true", help="do not run datatrove")
    args = parser.parse_args()
    if not args.warc.exists():
        raise SystemExit(f"benchmark input {args.warc} not found (it lives in ../shared/data)")
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    rows = stage_rows(args.warc, "resiliparse") + stage_rows(args.warc, "trafilatura")
    rows += chain_rows(str(RECIPE), real_texts(args.warc) * 3, not args.skip_peer)
    html_mb = rows[0][2]
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-"))
    try:
        shards = []
        for i in range(args.copies):
            shards.append(work / "in" / f"pages-{i}.warc.gz")
            shards[-1].parent.mkdir(exist_ok=True)
            shutil.copy(args.warc, shards[-1])
        for engine in ("resiliparse", "trafilatura"):
            rows += job_rows(shards, work / "out", engine, html_mb)
        if not args.skip_peer:
            rows += peer_rows(shards, html_mb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    print(json.dumps({"input": str(args.warc), "copies": args.copies}))


if __name__ == "__main__":
    main()
