"""The full-size shard benchmark's inputs and its worker sampling (benchmarks/shard_size.py)."""

from __future__ import annotations

import subprocess
import sys
import zlib
from collections import Counter

from benchmarks.shard_size import WorkerSampler, build_warc, dev_pages
from operators.io.warc import read_warc


def test_built_warc_is_common_crawl_shaped_with_distinct_pages(tmp_path):
    path = build_warc(tmp_path / "cc.warc.gz", 0, 40)
    counts, problems = Counter(), []
    with open(path, "rb") as f:
        rows = [r for b in read_warc(f, str(path), "cc", "unknown", 4_000_000, 16, counts, problems)
                for r in b.to_pylist()]
    assert counts == {"read.response": 40} and not problems
    assert {r["crawl"] for r in rows} == {"CC-MAIN-2024-22"}
    assert len({r["url"] for r in rows}) == len({r["raw_html"] for r in rows}) == 40
    sizes = {sum(map(len, parts)) for _, _, parts, _ in dev_pages()}
    assert {len(r["raw_html"]) for r in rows} <= sizes  # re-lettered in place: every body keeps its page's length
    data, members = path.read_bytes(), 0
    while data:  # one gzip member per record: the warcinfo, then a request and a response per page
        decoder = zlib.decompressobj(31)
        decoder.decompress(data)
        data, members = decoder.unused_data, members + 1
    assert members == 1 + 2 * 40
    assert build_warc(path, 0, 1) == path and path.stat().st_size > 0  # kept: a re-run builds nothing


def test_sampler_counts_a_worker_with_its_children(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text("import subprocess, time\n"  # its sys.executable is empty under its own title
                      f"child = subprocess.Popen([{sys.executable!r}, '-c', 'x = b\"x\" * (96 << 20); import time; "
                      "time.sleep(3)'])\n"
                      "end = time.process_time() + 1.0\n"
                      "while time.process_time() < end:\n"
                      "    pass\n"
                      "child.wait()\n")
    proc = subprocess.Popen(["bash", "-c", f"(exec -a busy-worker {sys.executable} {worker}); true"])
    with WorkerSampler(proc.pid, lambda title: title == "busy-worker", interval=0.05) as sampler:
        proc.wait()
    figures = sampler.figures()
    assert figures["workers"] == 1  # the root and the worker's child are not workers
    assert figures["peak_rss_mib"] >= 96  # the child's memory counts toward its worker
    assert figures["cpu_s"] >= 0.9
