"""A user's first run, as typed: ``make run`` on the sample shipped in data/ keeps documents and says where
they are, then ``make report`` (same OUTPUT, no other argument) reports that run into its own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.dataset as pads
import pytest

from tests.conftest import ROOT

# what the fineweb recipe drops on data/ (sample-pages.warc.gz: 38 real pages; whirlwind: one page, WARC and WET)
DROPPED = {
    "extract": {"extract.empty": 1},
    "language": {"language.not_allowed": 11},
    "gopher_repetition": {"gopher_repetition.dup_9_gram": 1, "gopher_repetition.dup_line_frac": 1,
                          "gopher_repetition.top_3_gram": 1},
    "gopher_quality": {"gopher_quality.alpha_words": 2, "gopher_quality.word_count": 1},
    "fineweb_quality": {"fineweb_quality.char_dup_ratio": 1, "fineweb_quality.line_punct_ratio": 1},
}
# what Ray, Spark, PySpark and py4j print on every run unless told otherwise (Java's own "Using incubator
# modules" line, printed by the JVM before any setting applies, is the one left)
NOISE = ("Token authentication is enabled", "log4j", "Setting default log level", "setLogLevel", "resolves to a "
         "loopback address", "SPARK_LOCAL_IP", "NativeCodeLoader", "FutureWarning", "require_minimum_pandas_version",
         "Closing down clientserver", "Truncated the string representation")
# what a surrounding make (make test OUTPUT=...) or the shell could hand down to the user's commands
INHERITED = ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "RECIPE", "INPUT", "OUTPUT", "CRAWL", "LIMIT",
             "SET", "RUN", "OUT", "RAY_ADDRESS")


def make(*args: str) -> subprocess.CompletedProcess:
    """``make -s <args>`` in the repository with this test's Python, never (re)installing the venv."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED} | {"RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(["make", "-s", "--no-print-directory", "-o", f"{sys.prefix}/.installed",
                           f"VENV={sys.prefix}", f"PY={sys.executable}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_make_run_keeps_documents_and_make_report_reports_that_run(tmp_path):
    out = tmp_path / "output"
    run_dir = out / "fineweb"
    done = make("run", f"OUTPUT={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == {"data": 20, "rejected": 20}
    assert done.stderr.strip().splitlines()[-1] == (
        f"kept 20 of 40 documents: {run_dir}/filter (rejected: {run_dir}/rejected; "
        f"stats: {run_dir}/filter/_stats.json; report: python -m jobs.report {run_dir})")

    stats = json.loads((run_dir / "filter" / "_stats.json").read_text())
    assert {name: op["dropped"] for name, op in stats["operators"].items() if op["dropped"]} == DROPPED
    kept = pads.dataset(run_dir / "filter", format="parquet").to_table(columns=["language", "url"])
    assert kept.num_rows == 20 and set(kept.column("language").to_pylist()) == {"eng_Latn"}
    rejected = pads.dataset(run_dir / "rejected", format="parquet").to_table(columns=["language"])
    other = Counter(lang for lang in rejected.column("language").to_pylist() if lang not in ("eng_Latn", None))
    assert other == {"spa_Latn": 3, "deu_Latn": 2, "fra_Latn": 1, "ita_Latn": 1, "jpn_Jpan": 1, "pol_Latn": 1,
                     "rus_Cyrl": 1, "cmn_Hani": 1}  # whirlwind's an: spa_Latn

    dedup = make("dedup", f"INPUT={run_dir}/filter", f"OUTPUT={run_dir}/dedup")
    assert dedup.returncode == 0, dedup.stderr[-3000:]
    assert json.loads(dedup.stdout.strip().splitlines()[-1])["input"] == 20
    for command in (done, dedup):  # our lines and real problems only: no third-party notices on every run
        assert not [line for line in command.stderr.splitlines() if any(noise in line for noise in NOISE)]

    report = make("report", f"OUTPUT={out}")
    assert report.returncode == 0, report.stderr[-3000:]
    assert report.stdout.strip() == f"{run_dir}/report.html"
    assert f"reporting {run_dir} " in report.stderr
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and f"Run report: {run_dir}" in page


@pytest.mark.slow
def test_make_run_with_the_fineweb2_recipe_keeps_every_language_in_its_folder_then_dedups_and_rehydrates(tmp_path):
    out = tmp_path / "output"
    run_dir = out / "fineweb2"
    done = make("run", "RECIPE=jobs/recipes/fineweb2.yaml", f"OUTPUT={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((run_dir / "filter" / "_stats.json").read_text())
    languages = stats["languages"]
    kept = {lang: counts.get("kept", 0) for lang, counts in languages.items() if counts.get("kept")}
    assert sum(kept.values()) == stats["rows"]["data"] > 0 and len(kept) >= 2
    for lang, n in kept.items():  # each language's documents in its own folder, and only there
        table = pads.dataset(run_dir / "filter" / lang, format="parquet").to_table(columns=["language"])
        assert table.num_rows == n and set(table.column("language").to_pylist()) == {lang}
    assert stats["operators"]["gopher_quality"]["fallback_languages"].keys() <= {"eng_Latn", "lat_Latn"}

    dedup = make("dedup", "DEDUP_RECIPE=jobs/recipes/dedup-fineweb2.yaml", f"INPUT={run_dir}/filter",
                 f"OUTPUT={run_dir}/dedup")
    assert dedup.returncode == 0, dedup.stderr[-3000:]
    deduped = json.loads((run_dir / "dedup" / "_stats.json").read_text())
    assert deduped["input"] == stats["rows"]["data"]
    # English has no shipped weights, and a filter-mode run carries no filter outcomes to compute them from
    assert deduped["rehydration"]["eng_Latn"]["weights"] == "none"
    assert {lang: s["documents"] for lang, s in deduped["rehydration"].items()} == \
        kept  # no duplicates among these pages
    table = pads.dataset(run_dir / "dedup", format="parquet").to_table(
        columns=["language", "minhash_cluster_size", "rehydration_repeats"])
    assert set(table.column("minhash_cluster_size").to_pylist()) == {1}
    assert set(table.column("rehydration_repeats").to_pylist()) == {1}
    for command in (done, dedup):  # nor the tokenizer libraries' own notices (jieba's "Building prefix dict")
        noise = (*NOISE, "prefix dict", "Loading model", "pkg_resources")
        assert not [line for line in command.stderr.splitlines() if any(n in line for n in noise)]


def test_make_report_with_nothing_run_says_so(tmp_path):
    done = make("report", f"OUTPUT={tmp_path}")
    assert done.returncode != 0
    assert f"error: {tmp_path}: no run under it (no _stats.json or mixture.json); make run writes one" in done.stderr
