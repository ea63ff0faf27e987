"""Per-worker memory and throughput against input size: does each stage stream, at Common Crawl's shape?

    python -m benchmarks.shard_size [--work DIR] [--records 40000] [--docs 1000000] [--small-docs 50000]
        [--stages curate,quality,dedup] [--driver-memory 6g]

Curation (``python -m jobs.curate`` with the shipped fineweb recipe, one worker) on a Common Crawl-sized
WARC (``--records`` response records, about 1 GB gzipped) against four 10 MB shards, all built from the dev
pages: each record is a dev page under its own URI with about a tenth of its text nodes re-lettered by a
cipher of its own (new words, so no cache or memo sees a page twice; markup and length kept), written with
warcio as CC writes it (warcinfo, then request/response pairs, one gzip member per record). The quality job
(fastText, a model trained here) and the dedup job on ``benchmarks.dedup_scaling``'s synthetic documents at
``--docs`` against ``--small-docs`` (its 50,000-document shards: the same shard size, 20x the input).

Per-worker figures are sampled from /proc every 0.2 s: a worker is a Ray worker process that ran the stage
(with its children: the extraction sandbox), or Spark's JVM and its Python workers; "CPU-s" counts the
worker's CPU time from its first task on (model loading at start-up left out). The built inputs are kept
under ``--work`` (default /tmp/shard-size), so a re-run builds nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parents[1]
DEV_WARC = ROOT.parent / "shared" / "data" / "real-pages-dev.warc.gz"
CRAWL = "CC-MAIN-2024-22"
SMALL_MB = 10
SMALL_SHARDS = 4  # 10 MB shards in the small curation run: enough documents for a steady rate
CIPHER_SHARE = 0.1  # text nodes re-lettered per record
LETTERS = b"abcdefghijklmnopqrstuvwxyz"
TAG_RE = re.compile(rb"(<[^>]*>)")
WORD_RE = re.compile(rb"[A-Za-z]{3}")


def dev_pages(warc: Path = DEV_WARC) -> list[tuple[str, StatusAndHeaders, list[bytes], list[int]]]:
    """The dev WARC's responses: (URI, HTTP headers, body split into text and markup, indexes of worded text)."""
    pages = []
    with open(warc, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response":
                parts = TAG_RE.split(record.content_stream().read())
                worded = [i for i in range(0, len(parts), 2) if WORD_RE.search(parts[i])]
                pages.append((record.rec_headers.get_header("WARC-Target-URI"), record.http_headers, parts, worded))
    return pages


def _page(pages: list, i: int) -> tuple[str, StatusAndHeaders, bytes]:
    """Record ``i``: a dev page picked by ``i``'s seed, its own URI, a tenth of its text nodes re-lettered."""
    rng = random.Random(i)
    uri, headers, parts, worded = pages[rng.randrange(len(pages))]
    cipher = bytes.maketrans(LETTERS, bytes(rng.sample(LETTERS, len(LETTERS))))
    parts = list(parts)
    for k in rng.sample(worded, int(len(worded) * CIPHER_SHARE)):
        parts[k] = parts[k].translate(cipher)
    scheme, _, rest = uri.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://s{i % 997}.{host}/{path.rstrip('/')}/r{i}", headers, b"".join(parts)


def _member(writer: WARCWriter, record) -> bytes:
    """One record as its own gzip member, at zlib's default level as CC's Java writer (warcio's own gzip uses 9,
    which takes twice as long here)."""
    writer.out.seek(0)
    writer.out.truncate()
    writer.write_record(record)
    return zlib.compress(writer.out.getvalue(), 6, wbits=31)


def _write_records(path: Path, first: int, count: int) -> int:
    """Write records ``first`` .. ``first + count - 1`` (request/response pairs) to ``path``; return the count."""
    pages = dev_pages()
    writer = WARCWriter(io.BytesIO(), gzip=False)
    with open(path, "wb") as out:
        for i in range(first, first + count):
            uri, headers, body = _page(pages, i)
            date = f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
            ids = [f"<urn:uuid:{uuid.UUID(int=random.Random(~i).getrandbits(128) ^ k)}>" for k in (0, 1)]
            get = StatusAndHeaders(f"GET /{uri.split('/', 3)[-1]} HTTP/1.1", [("Host", uri.split("/")[2])],
                                   is_http_request=True)
            out.write(_member(writer, writer.create_warc_record(
                uri, "request", payload=io.BytesIO(b""), http_headers=get,
                warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": ids[0]})))
            out.write(_member(writer, writer.create_warc_record(
                uri, "response", payload=io.BytesIO(body), http_headers=headers,
                warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": ids[1], "WARC-Concurrent-To": ids[0]})))
    return count


def build_warc(path: Path, first: int, count: int, processes: int = 2) -> Path:
    """A gzipped WARC of records ``first`` .. ``first + count - 1`` (reused when it exists), in ``processes`` pieces
    written at once and joined (gzip members concatenate)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    bounds = [first + count * k // processes for k in range(processes + 1)]
    pieces = [path.with_name(f"_{path.name}.{k}") for k in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_write_records, pieces, bounds[:-1], [b - a for a, b in zip(bounds, bounds[1:], strict=False)]))
    staging = path.with_name(f"_{path.name}")
    with open(staging, "wb") as out:
        writer = WARCWriter(io.BytesIO(), gzip=False)
        out.write(_member(writer, writer.create_warcinfo_record(path.name, {"isPartOf": CRAWL, "software": __name__})))
        for piece in pieces:
            with open(piece, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
            piece.unlink()
    staging.rename(path)
    return path


def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds, RSS bytes) of every process."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
                                          int(fields[21]) * page)
    return table


def _title(pid: int) -> str:
    with suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    return ""


class WorkerSampler:
    """Samples the processes under ``root`` every ``interval`` s in a thread. A worker is a process whose title
    ``active`` once matched (a Ray worker running the stage's task), with the processes under it; per worker: its
    peak RSS (summed over it and its children) and its CPU seconds since the sample before it was first active."""

    def __init__(self, root: int, active, interval: float = 0.2):
        self.root, self.active, self.interval = root, active, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.cpu: dict[int, float] = {}  # last CPU seconds seen per pid
        self.members: dict[int, set[int]] = {}  # worker -> every pid seen in its tree
        self.base: dict[int, float] = {}  # worker -> tree CPU before its first active sample
        self.peak: dict[int, int] = {}  # worker -> peak tree RSS
        self.trace: dict[int, list[tuple[float, int]]] = {}  # worker -> (time, tree RSS) of each sample
        self.span = [None, None]  # first and last time any worker was seen active

    def __enter__(self) -> WorkerSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        procs, now = _proc_table(), time.monotonic()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)

        def tree(pid: int) -> list[int]:
            out, todo = [], [pid]
            while todo:
                out.append(todo.pop())
                todo += children.get(out[-1], [])
            return out

        before = dict(self.cpu)
        self.cpu.update({pid: procs[pid][1] for pid in tree(self.root) if pid in procs})
        for pid in tree(self.root)[1:]:
            busy = self.active(_title(pid))
            if pid not in self.members:
                if not busy:
                    continue
                self.members[pid] = set()
                self.base[pid] = sum(before.get(p, self.cpu[p]) for p in tree(pid) if p in self.cpu)
            if busy:
                self.span = [self.span[0] or now, now]
            members = tree(pid)
            self.members[pid].update(members)
            rss = sum(procs[p][2] for p in members if p in procs)
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            self.trace.setdefault(pid, []).append((now, rss))

    def figures(self) -> dict:
        """Peak RSS MiB of the largest worker, CPU seconds of all workers, seconds from first to last active."""
        cpu = sum(sum(self.cpu[p] for p in members) - self.base[w] for w, members in self.members.items())
        busy = (self.span[1] - self.span[0]) if self.span[0] is not None else 0.0
        return {"workers": len(self.members), "peak_rss_mib": max(self.peak.values(), default=0) / 2**20,
                "cpu_s": cpu, "busy_s": busy, "quarters_mib": self.quarters()}

    def quarters(self) -> list[float]:
        """The largest worker's peak RSS MiB in each quarter of its sampled time: flat when it streams."""
        if not self.peak:
            return []
        trace = self.trace[max(self.peak, key=self.peak.get)]
        first, span = trace[0][0], max(trace[-1][0] - trace[0][0], 1e-9)
        peaks = [0] * 4
        for t, rss in trace:
            q = min(int(4 * (t - first) / span), 3)
            peaks[q] = max(peaks[q], rss)
        return [p / 2**20 for p in peaks]


def run_job(argv: list[str], active, log: Path, attempts: int = 10) -> dict:
    """Run a job's command (a fresh local Ray, never a cluster of this machine) with its workers sampled; a Ray
    that did not come up in its fixed 30 s (a busy machine) is started again."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for attempt in range(attempts):
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
            with WorkerSampler(proc.pid, active) as sampler:
                code = proc.wait()
        if not code:
            return sampler.figures()
        if attempt + 1 == attempts or "timed out during startup" not in log.read_text():
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({code}): see {log}")


def curate(work: Path, label: str, shards: list[Path]) -> dict:
    """The shipped fineweb recipe over ``shards`` with one worker."""
    out = work / f"curate-{label}"
    shutil.rmtree(out, ignore_errors=True)
    figures = run_job(["jobs.curate", "--config", "jobs/recipes/fineweb.yaml",
                       "--set", f"input.paths=[{', '.join(map(str, shards))}]", "--set", f"output.root={out}",
                       "--set", "ray.workers=1"], lambda title: title.startswith("ray::ShardRunner.run"),
                      work / f"curate-{label}.log")
    stats = json.loads((out / "fineweb" / "filter" / "_stats.json").read_text())
    mb = sum(p.stat().st_size for p in shards) / 1e6
    shown = f"{len(shards)} x {mb / len(shards):,.0f} MB shard" if len(shards) > 1 else f"1 x {mb:,.0f} MB shard"
    return {"stage": "curate (fineweb, 1 worker)", "input": f"{shown} ({stats['parts']} parts)",
            "docs": stats["read"]["read.response"], **figures}


def documents(work: Path, texts: list[str], n: int) -> Path:
    """``n`` synthetic documents in dedup_scaling's 50,000-document shards (reused when written before)."""
    from benchmarks.dedup_scaling import synthesize

    root, done = work / f"docs-{n}", work / f"docs-{n}.done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        synthesize(texts, n, root / "filter")
        done.touch()
    return root


def quality(work: Path, model: str, root: Path, n: int) -> dict:
    """The shipped quality recipe with one fastText classifier (DCLM's shape, trained here) over ``root``."""
    out = work / f"quality-{n}"
    shutil.rmtree(out, ignore_errors=True)
    classifier = f"classifiers=[{{name: dclm, kind: fasttext, model: {model}}}]"
    figures = run_job(["jobs.classify", "--config", "jobs/recipes/quality.yaml", "--set", f"input={root / 'filter'}",
                       "--set", f"output={out}", "--set", classifier, "--set", "buckets.classifiers=[dclm]"],
                      lambda title: title.startswith("ray::") and "Map" in title, work / f"quality-{n}.log")
    stats = json.loads((out / "_stats.json").read_text())
    return {"stage": "quality (fastText, Ray Data)", "input": f"{n:,} docs ({stats['shards']} shards)",
            "docs": stats["documents"], **figures}


def dedup(spark, root: Path, n: int) -> dict:
    """The dedup job as ``benchmarks.dedup_scaling`` runs it (its peak RSS sampling), with the JVM's CPU time."""
    from benchmarks.dedup_scaling import timed_job

    shutil.rmtree(root / "dedup", ignore_errors=True)
    with WorkerSampler(os.getpid(), lambda title: title.endswith("/java")) as sampler:
        stats, mem = timed_job(spark, root)
    figures = sampler.figures()
    figures.update(busy_s=stats["seconds"], peak_rss_mib=mem.get("jvm", 0) + mem.get("workers", 0),
                   jvm_mib=mem.get("jvm", 0), python_mib=mem.get("workers", 0),
                   python_each_mib=mem.get("worker_max", 0), python_count=mem.get("worker_count", 0),
                   python_by_stage=dict(sorted(((k, round(v)) for k, v in mem.get("by_stage", {}).items()),
                                               key=lambda kv: -kv[1])))
    return {"stage": f"dedup (Spark local[2], driver_memory {spark.conf.get('spark.driver.memory')}: JVM + "
                      "Python workers)",
            "input": f"{n:,} docs, {spark.conf.get('spark.sql.shuffle.partitions')} shuffle partitions", "docs": n,
            **figures}


def note(row: dict) -> dict:
    """``row``, shown at once on stderr (a whole run takes long)."""
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    head = ["stage", "input", "docs", "docs/s (wall)", "docs per CPU-s", "worker peak RSS MiB",
            "peak RSS MiB per quarter of the run", "big/small: docs/s, docs per CPU-s, RSS"]
    lines = [head, ["---"] * len(head)]
    small = {}
    for row in rows:
        rate, per_cpu = row["docs"] / max(row["busy_s"], 1e-9), row["docs"] / max(row["cpu_s"], 1e-9)
        figures = (rate, per_cpu, row["peak_rss_mib"])
        ratio = " / ".join(f"{b / a:.2f}" for a, b in zip(small[row["stage"]], figures, strict=True)) \
            if row["stage"] in small else "—"
        small.setdefault(row["stage"], figures)
        lines.append([row["stage"], row["input"], f"{row['docs']:,}", f"{rate:,.0f}", f"{per_cpu:,.0f}",
                      f"{row['peak_rss_mib']:,.0f}" + (f" (JVM {row['jvm_mib']:,.0f} + Python workers "
                                                       f"{row['python_mib']:,.0f}: up to {row['python_count']} "
                                                       f"at once, the largest {row['python_each_mib']:,.0f})"
                                                       if "jvm_mib" in row else ""),
                      " / ".join(f"{q:,.0f}" for q in row.get("quarters_mib", [])) or "—", ratio])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shard_size", description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/shard-size", help="inputs (kept for re-runs) and outputs")
    parser.add_argument("--records", type=int, default=40_000, help="response records of the big WARC")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents of the big quality/dedup input")
    parser.add_argument("--small-docs", type=int, default=50_000, help="documents of the small quality/dedup input")
    parser.add_argument("--stages", default="curate,quality,dedup")
    parser.add_argument("--driver-memory", default="6g", help="dedup's spark.driver_memory (its JVM heap)")
    parser.add_argument("--docs-per-partition", type=int, help="dedup's spark.shuffle_partitions as the documents over "
                                                                "this (at least 8); default: 8 at every size")
    args = parser.parse_args(argv)
    work, stages, rows = Path(args.work), args.stages.split(","), []
    work.mkdir(parents=True, exist_ok=True)
    if "curate" in stages:
        started = time.perf_counter()
        big = build_warc(work / f"cc-size-{args.records}.warc.gz", 0, args.records)
        count = round(SMALL_MB * 1e6 / (big.stat().st_size / args.records))
        small = [build_warc(work / f"cc-size-small-{count}-{k}.warc.gz", 10**8 + k * count, count)
                 for k in range(SMALL_SHARDS)]
        print(f"inputs ready in {time.perf_counter() - started:.0f} s: {big} ({big.stat().st_size / 1e6:,.0f} MB)",
              file=sys.stderr)
        rows += [note(curate(work, "small", small)), note(curate(work, "big", [big]))]
    if "quality" in stages or "dedup" in stages:
        from benchmarks.real_pages import real_texts

        texts = real_texts()
        roots = {n: documents(work, texts, n) for n in (args.small_docs, args.docs)}
    if "quality" in stages:
        from benchmarks.classify_throughput import fasttext_model

        (work / "fasttext").mkdir(exist_ok=True)
        model = str(work / "fasttext" / "ft.bin")
        if not Path(model).exists():
            fasttext_model(texts, work / "fasttext")
        rows += [note(quality(work, model, roots[n], n)) for n in roots]
    if "dedup" in stages:
        from benchmarks.dedup_scaling import synthesize, timed_job
        from jobs.dedup.job import spark_session
        from jobs.dedup.recipe import SparkConfig

        spark = spark_session(SparkConfig(master="local[2]", driver_memory=args.driver_memory, shuffle_partitions=8))
        try:
            synthesize(texts, 2000, work / "warmup" / "filter")
            timed_job(spark, work / "warmup")  # JVM JIT and Python worker start-up, not measured
            for n in roots:
                partitions = max(8, math.ceil(n / args.docs_per_partition)) if args.docs_per_partition else 8
                spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
                rows.append(note(dedup(spark, roots[n], n)))
        finally:
            spark.stop()
    print(table(rows))
    print(f"\n`python -m benchmarks.shard_size {' '.join(sys.argv[1:] if argv is None else argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
