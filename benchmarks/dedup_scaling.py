"""Scaling of the global dedup job (jobs.dedup) with corpus size N, with datatrove's MinHash as the peer.

    python -m benchmarks.dedup_scaling [--sizes 10000,100000,1000000] [--skip-peer] [--peer-max 10000] [--work DIR]

Docs are synthesised from real pages (resiliparse text of the dev WARC): a 100-400 word window of a base text
with 30-60% of words replaced (distinct), 30% of docs are near-duplicates of an earlier one (1-3% more edits),
5% exact copies. Per N: our band keys (minhash_bands, 2048-doc Arrow batches, one core) and datatrove's
MinhashDedupSignature.get_shingles + get_signature per document (spaCy tokenizer; no file writing or bucket
sorting; on the first --peer-max docs), then the whole job on local[2] with peak RSS sampled from /proc every 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import suppress
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.real_pages import real_texts
from jobs.dedup.job import run, spark_session
from jobs.dedup.recipe import DedupRecipe, SparkConfig
from operators.dedup.minhash import minhash_bands, mix64
from operators.schema import conform, output_schema

ROOT = Path(__file__).resolve().parents[1]
WARC = ROOT.parent / "shared" / "data" / "real-pages-dev.warc.gz"
CRAWL, SHARD_DOCS, BATCH = "CC-MAIN-2024-22", 50_000, 2048


def _edit(words: np.ndarray, h: np.ndarray, threshold: np.ndarray, vocab: int) -> None:
    """Replace (in place) words whose hash is under ``threshold`` by the vocabulary word its low 32 bits pick."""
    hit = h < threshold
    words[hit] = (h[hit] & np.uint64(0xFFFFFFFF)) % np.uint64(vocab)


def synthesize(texts: list[str], n: int, root: Path, seed: int = 0) -> None:
    """Write n docs as <root>/<crawl>/shard-XXXX.parquet. Words are vocabulary ids; edits are hash-seeded."""
    split = [t.split() for t in texts]
    encoded = pa.array([w for ws in split for w in ws]).dictionary_encode()
    vocab, ids = encoded.dictionary, np.asarray(encoded.indices).astype(np.uint64)
    lens = np.array([len(ws) for ws in split])
    base_off = np.concatenate([[0], np.cumsum(lens)])
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    kind = np.digitize(rng.random(n), [0.05, 0.35])  # 0 exact copy, 1 near-duplicate, 2 distinct
    kind[: min(n, 10)] = 2
    distinct = np.flatnonzero(kind == 2)
    before = np.searchsorted(distinct, k)  # distinct docs before k
    fam = np.where(kind == 2, k, distinct[(rng.random(n) * np.maximum(before, 1)).astype(np.int64)])
    heavy = (rng.uniform(0.30, 0.60, n) * 2.0**64).astype(np.uint64)  # edit rates as hash thresholds
    near = (np.where(kind == 1, rng.uniform(0.01, 0.03, n), 0.0) * 2.0**64).astype(np.uint64)
    base = fam % len(texts)
    length = np.minimum(rng.integers(100, 401, n)[fam], lens[base])
    start = (base_off[base] + (rng.random(n)[fam] * (lens[base] - length + 1)).astype(np.int64)).astype(np.uint64)
    schema = output_schema({})
    for s, lo in enumerate(range(0, n, SHARD_DOCS)):
        d = np.arange(lo, min(n, lo + SHARD_DOCS))
        offsets = np.concatenate([[0], np.cumsum(length[d])])
        rep = partial(np.repeat, repeats=length[d])  # per-doc values, one per word
        p = np.arange(offsets[-1], dtype=np.uint64) - rep(offsets[:-1].astype(np.uint64))
        f = fam[d].astype(np.uint64) << np.uint64(20)
        words = ids[rep(start[d]) + p]
        _edit(words, mix64(rep(f) ^ p), rep(heavy[fam[d]]), len(vocab))  # family edits: shared with its copies
        _edit(words, mix64(rep((d.astype(np.uint64) << np.uint64(20)) ^ np.uint64(0xABCDEF)) ^ p),
              rep(near[d]), len(vocab))  # the doc's own edits (near-duplicates only)
        text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), vocab.take(words)), " ")
        table = pa.table({"id": [f"doc{i:08d}" for i in d], "text": text,
                          "date": [f"2024-05-{1 + i % 28:02d}T12:00:00Z" for i in d],
                          "url": [f"https://bench.example/{fam[i] % 997}/{i}" for i in d],
                          "source_offset": pa.array(d, pa.int64())})
        (root / CRAWL).mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(table, schema), root / CRAWL / f"shard-{s:04d}.parquet")


def text_batches(root: Path, limit: int):
    """The first ``limit`` texts under root as Arrow arrays of up to BATCH."""
    for path in sorted((root / CRAWL).glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=["text"]):
            if limit <= 0:
                return
            yield batch.column(0).slice(0, limit)
            limit -= len(batch)


def timed(fn, batches) -> float:
    """Docs/s of ``fn(batch)`` summed over the batches (only the calls are timed)."""
    docs, seconds = 0, 0.0
    for batch in batches:
        t = time.perf_counter()
        fn(batch)
        seconds += time.perf_counter() - t
        docs += len(batch)
    return docs / seconds


def datatrove_signer(scratch: Path) -> tuple:
    """(per-batch function computing datatrove's stage-1 signatures in-process, its hash function)."""
    import importlib.util

    import datatrove

    # loaded by path: datatrove.pipeline.dedup/__init__ imports exact_substrings, which needs `tokenizers`
    spec = importlib.util.spec_from_file_location(
        "datatrove_minhash", Path(datatrove.__file__).parent / "pipeline" / "dedup" / "minhash.py")
    dt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dt)
    hash_fc = "xxhash" if importlib.util.find_spec("xxhash") else "sha1"  # its default is xxhash
    step = dt.MinhashDedupSignature(str(scratch), config=dt.MinhashConfig(  # 5-grams, 14 buckets x 8 hashes
        hash_config=dt.HashConfig(precision=64, hash_fc=hash_fc)))
    step.get_signature(step.get_shingles("warm up the spacy tokenizer and the permutation parameters"))

    def sign(texts: list[str]) -> None:
        for text in texts:  # what MinhashDedupSignature.run does per document, before writing and sorting
            shingles = step.get_shingles(text)
            if shingles.size:
                step.get_signature(shingles)
    return sign, hash_fc


def _below(procs: dict, pid: int) -> list[int]:
    kids = [c for c, (ppid, _, _) in procs.items() if ppid == pid]
    return kids + [g for c in kids for g in _below(procs, c)]


def sample_peaks(stop: threading.Event, peak: dict, interval: float = 0.2, spark=None) -> None:
    """Peak RSS (MiB) of this process, of its java descendant(s), and of the sum of the JVM's Python workers;
    ``worker_max`` the largest one Python worker, ``worker_count`` the most of them at once and, with ``spark``,
    ``by_stage`` the largest one Python worker while each Spark stage ran (by the stage's call site)."""
    tracker = spark.sparkContext.statusTracker() if spark is not None else None
    while not stop.is_set():
        procs = {}  # pid -> (ppid, name, RSS MiB)
        for p in Path("/proc").glob("[0-9]*/status"):
            with suppress(OSError):
                f = dict(line.split(":", 1) for line in p.read_text().splitlines() if ":" in line)
                procs[int(p.parent.name)] = (int(f["PPid"]), f["Name"].strip(), int(f.get("VmRSS", "0").split()[0]))
        jvms = [p for p in _below(procs, os.getpid()) if procs[p][1] == "java"]
        now = {"jvm": jvms, "driver": [os.getpid()],
               "workers": [p for j in jvms for p in _below(procs, j) if procs[p][1].startswith("python")]}
        for key, pids in now.items():
            peak[key] = max(peak.get(key, 0), sum(procs.get(p, (0, "", 0))[2] for p in pids) / 1024)
        largest = max((procs.get(p, (0, "", 0))[2] / 1024 for p in now["workers"]), default=0)
        peak["worker_max"] = max(peak.get("worker_max", 0), largest)
        peak["worker_count"] = max(peak.get("worker_count", 0), len(now["workers"]))
        for stage in (tracker.getActiveStageIds() if tracker else []):
            info = tracker.getStageInfo(stage)
            name = info.name if info else "?"
            peak.setdefault("by_stage", {})[name] = max(peak.get("by_stage", {}).get(name, 0), largest)
        stop.wait(interval)


def timed_job(spark, root: Path) -> tuple[dict, dict]:
    """Run the dedup job on <root>/filter in ``spark``'s session (the recipe names its settings); (its stats, peak
    RSS MiB sampled while it ran)."""
    conf = spark.conf
    recipe = DedupRecipe(name="bench", input=str(root / "filter"), output=str(root / "dedup"),
                         spark={"master": conf.get("spark.master"), "driver_memory": conf.get("spark.driver.memory"),
                                "shuffle_partitions": int(conf.get("spark.sql.shuffle.partitions"))})
    stop, mem = threading.Event(), {}
    sampler = threading.Thread(target=sample_peaks, args=(stop, mem, 0.2, spark), daemon=True)
    sampler.start()
    stats = run(recipe, spark)
    stop.set()
    sampler.join()
    return stats, mem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dedup_scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--skip-peer", action="store_true", help="skip datatrove's signature timing")
    parser.add_argument("--peer-max", type=int, default=10_000, help="docs datatrove is timed on (first of N)")
    parser.add_argument("--work", help="scratch dir (default: a temp dir, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the default temp dir")
    parser.add_argument("--warc", default=str(WARC))
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="dedup-scaling-"))
    texts = real_texts(Path(args.warc))
    print(f"{len(texts)} base texts, avg {sum(map(len, texts)) / len(texts) / 1e3:.1f} KB", file=sys.stderr)
    sign, hash_fc = (None, "") if args.skip_peer else datatrove_signer(work / "dt-sigs")
    spark = spark_session(SparkConfig(master="local[2]", driver_memory="6g", shuffle_partitions=8))
    cores, rows, prev = spark.sparkContext.defaultParallelism, [], None
    try:
        synthesize(texts, 2000, work / "warmup" / "filter")
        timed_job(spark, work / "warmup")  # JVM JIT and Python worker start-up, not timed
        for n in map(int, args.sizes.split(",")):
            t, src = time.perf_counter(), work / str(n) / "filter"
            synthesize(texts, n, src)
            print(f"N={n}: synthesised in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            ours = timed(partial(minhash_bands, n=5, bands=14, rows=8, seed=1), text_batches(src, n))
            peer_docs = 0 if args.skip_peer else min(n, args.peer_max)
            peer = peer_docs and timed(sign, [b.to_pylist() for b in text_batches(src, peer_docs)])
            stats, mem = timed_job(spark, work / str(n))
            secs = stats["seconds"]
            print(f"N={n}: {stats}", file=sys.stderr)
            rows.append([f"{n:,}", f"{ours:,.0f}", f"{peer:,.0f} ({peer_docs:,}, {hash_fc})" if peer else "—",
                         f"{ours / peer:.1f}x" if peer else "—", f"{secs:.1f}", f"{n / secs / cores:,.0f}",
                         f"{secs / prev[1] / (n / prev[0]):.2f}" if prev else "—",
                         f"{stats['removed']:,} ({stats['exact_duplicates']:,}/{stats['fuzzy_duplicates']:,})",
                         *(f"{mem.get(key, 0):,.0f}" for key in ("jvm", "driver", "workers"))])
            prev = (n, secs)
    finally:
        spark.stop()
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    head = ["N", "ours sig docs/s/core", "datatrove sig docs/s/core (docs timed, hash)", "ours/datatrove", "job s",
            f"job docs/s/core ({cores} cores)", "growth", "removed (exact/fuzzy)", "JVM peak MiB",
            "py driver peak MiB", "py workers peak MiB"]
    print("\n".join(["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *rows]]))
    print(f"\n`python -m benchmarks.dedup_scaling {' '.join(sys.argv[1:] if argv is None else argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
