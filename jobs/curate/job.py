"""Curation job: WARC/WET shards -> extraction -> language id -> heuristic filters -> Parquet.

    python -m jobs.curate --config jobs/recipes/fineweb.yaml [--set key=value ...]

Each input shard goes whole to one worker actor (read, extract, filter, write; see ``shard_runner.py``
and ``shard_pool.py`` beside this file): a shard's output is written whole, and its ledger entry last,
so a re-run skips finished shards.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections import Counter

import pyarrow as pa

from jobs.common.cli import job_main, start_ray
from jobs.common.progress import Progress
from jobs.curate.checks import check
from jobs.curate.recipe import Recipe
from jobs.curate.shard_plan import plan_units
from jobs.curate.shard_pool import ShardPool, alive_cpus
from jobs.curate.shard_runner import ShardRunner, layout_of, storage_of
from operators.io.layout import Layout
from operators.io.ledger import to_do
from operators.io.run_lock import RunLock
from operators.io.shard import unit_name
from operators.io.storage import Storage, join
from operators.registry import operator_class
from operators.schema import DOCUMENT_FIELDS

READ_COLUMNS = ("id", "url", "crawl", "date", "source", "source_offset",
                "raw_html", "raw_content_type", "raw_length")
log = logging.getLogger("cc_refinery.curate")


def check_columns(recipe: Recipe) -> dict[str, pa.DataType]:
    """Check each step's needed columns exist before it; return the signal columns the run adds."""
    available = set(READ_COLUMNS)
    signals: dict[str, pa.DataType] = {}
    document = {f.name for f in DOCUMENT_FIELDS}
    for name, params in recipe.steps:
        cls = operator_class(name)
        missing = [c for c in cls.needs if c not in available]
        if missing:
            raise ValueError(f"pipeline.{name} needs column(s) {missing}, which no earlier step provides")
        adds = cls.columns(params)
        available |= set(adds)
        available -= set(cls.drops)
        signals.update({c: t for c, t in adds.items() if c not in document})
    return signals


def aggregate(entries: list[dict]) -> dict:
    """Sum ledger entries into the stage's ``_stats.json``."""
    operators: dict[str, dict] = {}
    read, rows = Counter(), Counter()
    languages: dict[str, Counter] = {}
    for entry in entries:
        read.update(entry["read"])
        rows.update(entry["rows"])
        for name, s in entry["operators"].items():
            total = operators.setdefault(name, {"in": 0, "out": 0, "dropped": Counter(),
                                                "bytes_in": 0, "seconds": 0.0})
            for key, value in s.items():
                if isinstance(value, dict):
                    total.setdefault(key, Counter()).update(value)
                else:
                    total[key] += value
        for language, counts in entry.get("languages", {}).items():
            languages.setdefault(language, Counter()).update(counts)
    for total in operators.values():
        for key, value in total.items():
            if isinstance(value, Counter):
                total[key] = dict(sorted(value.items()))
        total["seconds"] = round(total["seconds"], 3)
        total["docs_per_s"] = round(total["in"] / total["seconds"], 1) if total["seconds"] else None
    return {
        "shards": len({e["shard"] for e in entries}),
        "parts": len(entries),
        "rows": dict(rows),
        "read": dict(sorted(read.items())),
        "bytes_read": sum(e["bytes_read"] for e in entries),
        "seconds": round(sum(e["seconds"] for e in entries), 3),
        "operators": operators,
        "languages": {language: dict(sorted(c.items())) for language, c in sorted(languages.items())},
    }


def run(recipe: Recipe) -> dict:
    """Run the job; return the stage stats. Raises if any shard failed (after the others finish)."""
    signals = check_columns(recipe)
    names = check(recipe)  # the recipe's files, then the input, then the output: nothing written before
    storage, layout = storage_of(recipe), layout_of(recipe)
    with RunLock(storage, layout.stage_dir):
        return _run_locked(recipe, signals, storage, layout, names)


def _run_locked(recipe: Recipe, signals: dict, storage: Storage, layout: Layout, names: dict[str, str]) -> dict:
    """The run, once this process holds the output."""
    storage.sweep_staging(join(layout.root, layout.run))  # what a killed run was writing
    recorded = {n.removesuffix(".json") for n in storage.listdir(layout.ledger_dir)}
    started = time.time()
    timing = {}  # wall seconds of the job's phases, for finding where fixed cost goes

    @functools.cache
    def pool() -> ShardPool:
        """Ray and the workers, started as soon as they are known to be needed."""
        start_ray(recipe.ray)
        timing["ray_start_s"] = round(time.time() - started, 3)
        return ShardPool(ShardRunner, (recipe, signals), recipe.ray.workers or max(1, alive_cpus()))

    units = plan_units(storage, names, recorded, lambda: len(pool().actors), recipe.input.part_mb)
    pending, changed = to_do(storage, {unit: uri for unit, (uri, _, _) in units.items()}, layout.ledger, recorded)
    split = f" in {len(units)} parts" if len(units) > len(names) else ""
    log.info("%d shards%s: %d done before, %d to do (%d redone: input changed)", len(names), split,
             len(units) - len(pending), len(pending), len(changed))
    failed, retried = [], []
    if pending:
        todo = [{"uri": units[unit][0], "shard": units[unit][1], "part": units[unit][2]} for unit in pending]
        progress = Progress("curate", len(todo))
        pool_started = time.time()
        for entry in pool().run(todo):
            progress.shard_done(sum(entry.get("rows", {}).values()))
            unit = unit_name(entry["shard"], entry["part"])
            if "error" in entry:
                failed.append({"shard": unit, "error": entry["error"]})
                log.error("shard %s failed: %s", unit, entry["error"])
            else:
                log.info("shard %s: %s rows kept in %.1fs", unit, entry["rows"]["data"], entry["seconds"])
        timing.update(workers=len(pool().actors), pool_s=round(time.time() - pool_started, 3))
        retried = [{"shard": unit_name(r["shard"], r["part"]), "error": r["error"]} for r in pool().retried]
    entries = [json.loads(storage.read_bytes(layout.ledger(unit))) for unit in units
               if storage.exists(layout.ledger(unit))]
    stats = aggregate(entries)
    stats.update(run=layout.run, mode=recipe.mode, wall_seconds=round(time.time() - started, 3), timing=timing,
                 retried=retried, failed=failed)
    storage.write_text(layout.stats, json.dumps(stats, indent=1))
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) failed: {', '.join(e['shard'] for e in failed)}")
    return stats


def where(recipe: Recipe, stats: dict) -> str:
    """One line for a person, after the JSON summary: how many documents were kept, and where the run's files are."""
    layout = layout_of(recipe)

    def shown(path: str) -> str:
        return path if "://" in path else os.path.normpath(path)

    ops = list(stats["operators"].values())
    seen = ops[0]["in"] if ops else stats["rows"].get("data", 0) + stats["rows"].get("rejected", 0)
    run_dir = shown(join(layout.root, layout.run))
    rejected = shown(join(run_dir, "rejected")) if recipe.output.rejected else "not written (output.rejected: false)"
    return (f"kept {stats['rows'].get('data', 0):,} of {seen:,} documents: {shown(layout.stage_dir)} "
            f"(rejected: {rejected}; stats: {shown(layout.stats)}; report: python -m jobs.report {run_dir})")


def main(argv: list[str] | None = None) -> int:
    return job_main(__doc__, "python -m jobs.curate", Recipe, run, ("shards", "rows", "wall_seconds"), argv,
                    then=where)

if __name__ == "__main__":
    sys.exit(main())
