"""The run report: one self-contained HTML page (inline SVG, no scripts, nothing fetched) of a run's numbers.

    python -m jobs.report [<run root>] [--under output] [--out <run root>/report.html] [--endpoint-url URL]

The run root is a mixture root (``<root>/<name>/``, see jobs/pipeline/job.py) or one job's output folder,
local or s3://. Every ``_stats.json``, ``_ledger/`` entry and ``mixture.json`` under it is read; the
language ids of the curated documents and the dedup clusters are counted from the files on disk.
With no run root, the run reported is the one under ``--under`` (an output root) that wrote a
``_stats.json`` or ``mixture.json`` last: ``make run`` then ``make report`` reports that run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from jobs.report.charts import page
from jobs.report.sections import kind, sections
from operators.io.storage import Storage, join

THREADS = 32  # ledger entries read at once


@dataclass
class Run:
    """What a run left on disk, by folder relative to the run root ("" is the root itself)."""

    root: str
    stats: dict[str, dict]
    ledgers: dict[str, list[dict]]
    mixtures: dict[str, dict]
    languages: dict[str, tuple[Counter, Counter]]  # curate folder -> documents per language id (kept, dropped)
    clusters: dict[str, Counter]  # dedup folder -> number of duplicate clusters per size (kept document included)

    def name(self, folder: str) -> str:
        return folder or self.root.rstrip("/").rsplit("/", 1)[-1]


def _listing(storage: Storage, root: str) -> list[str]:
    """Every file under ``root`` as a path relative to it, staging files left out."""
    fs, base = storage.filesystem(root)
    base = base.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(rel for info in infos if info.type == pafs.FileType.File
                  and not (rel := info.path[len(base):].strip("/")).rsplit("/", 1)[-1].startswith("."))


def _data_files(files: list[str], folder: str) -> list[str]:
    """The Parquet files of a stage output folder (``_`` and ``.`` names, as dataset readers skip them)."""
    prefix = f"{folder}/" if folder else ""
    return [f for f in files if f.startswith(prefix) and f.endswith(".parquet")
            and not any(part.startswith(("_", ".")) for part in f[len(prefix):].split("/"))]


def _table(storage: Storage, root: str, files: list[str], columns: list[str]):
    fs, _ = storage.filesystem(root)
    paths = [storage.filesystem(join(root, f))[1] for f in files]
    return pads.dataset(paths, filesystem=fs, format="parquet").to_table(columns=columns)


def _languages(storage: Storage, root: str, files: list[str]) -> Counter:
    if not files:
        return Counter()
    counts = pc.value_counts(_table(storage, root, files, ["language"]).column("language")).to_pylist()
    return Counter({c["values"]: c["counts"] for c in counts if c["values"] is not None})


def _cluster_sizes(storage: Storage, root: str, files: list[str]) -> Counter:
    """Clusters per size from ``_duplicates/``: a cluster is a kept document (``cluster_id``) and the documents
    one method removed for it, as the dedup job's ``largest_cluster`` counts them."""
    if not files:
        return Counter()
    grouped = _table(storage, root, files, ["method", "cluster_id"]).group_by(["method", "cluster_id"])
    return Counter(n + 1 for n in grouped.aggregate([([], "count_all")]).column("count_all").to_pylist())


def gather(storage: Storage, root: str) -> Run:
    files = _listing(storage, root)

    def read(rel: str) -> dict:
        return json.loads(storage.read_bytes(join(root, rel)))

    stats = {f.rpartition("/")[0]: read(f) for f in files if f.rpartition("/")[2] == "_stats.json"}
    mixtures = {f.rpartition("/")[0]: read(f) for f in files if f.rpartition("/")[2] == "mixture.json"}
    ledger_files = [f for f in files if "_ledger" in f.split("/")[:-1] and f.endswith(".json")]
    if not (stats or mixtures or ledger_files):
        raise FileNotFoundError(f"{root}: no _stats.json, _ledger/ entry or mixture.json under it")
    ledgers: dict[str, list[dict]] = {}
    with ThreadPoolExecutor(THREADS) as pool:
        for f, entry in zip(ledger_files, pool.map(read, ledger_files), strict=True):
            parts = f.split("/")
            ledgers.setdefault("/".join(parts[:parts.index("_ledger")]), []).append(entry)
    languages, clusters = {}, {}
    for folder, s in stats.items():
        if kind(s) == "curate":
            parent = folder.rpartition("/")[0]
            rejected = _data_files(files, f"{parent}/rejected" if parent else "rejected") if folder else []
            languages[folder] = (_languages(storage, root, _data_files(files, folder)),
                                 _languages(storage, root, rejected))
        elif kind(s) == "dedup":
            duplicates = [f for f in files if f.startswith(f"{folder}/_duplicates/" if folder else "_duplicates/")
                          and f.endswith(".parquet")]
            clusters[folder] = _cluster_sizes(storage, root, duplicates)
    return Run(root, stats, ledgers, mixtures, languages, clusters)


def newest_run(storage: Storage, under: str) -> tuple[str, str]:
    """The run under the output root ``under`` that wrote a ``_stats.json`` or ``mixture.json`` last, and that file:
    the run is the folder right under ``under`` that holds it (``output/fineweb`` for ``output/fineweb/filter/``),
    or ``under`` itself when the file is directly in it."""
    fs, base = storage.filesystem(under)
    base = base.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = [(info.mtime_ns or 0, rel) for info in infos if info.type == pafs.FileType.File
             and (rel := info.path[len(base):].strip("/")).rsplit("/", 1)[-1] in ("_stats.json", "mixture.json")
             and not any(part.startswith(".") for part in rel.split("/"))]
    if not found:
        raise FileNotFoundError(f"{under}: no run under it (no _stats.json or mixture.json); make run writes one")
    _, rel = max(found)
    parts = rel.split("/")
    return (join(under, parts[0]) if len(parts) > 1 else under.rstrip("/")), join(under, rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.report", description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", help="a mixture root or a job's output folder, local or s3:// "
                        "(default: the run under --under written last)")
    parser.add_argument("--under", default="output", help="the output root searched when no run root is given "
                        "(default: output)")
    parser.add_argument("--out", help="the HTML file to write, local or s3:// (default: <run root>/report.html)")
    parser.add_argument("--endpoint-url", help="an S3-compatible endpoint for s3:// paths")
    args = parser.parse_args(argv)
    storage = Storage(endpoint_url=args.endpoint_url)
    try:
        root = args.root
        if root is None:
            root, marker = newest_run(storage, args.under)
            print(f"reporting {root} (written last under {args.under}: {marker})", file=sys.stderr)
        run = gather(storage, root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or join(root, "report.html")
    storage.write_text(out, page(f"Run report: {root}", sections(run)))
    print(out)
    return 0
