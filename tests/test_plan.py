"""The cost planner on a fake crawl listing served by a real local S3 server (moto over HTTP)."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import subprocess
import sys
import time

import pytest

from jobs.plan import main
from operators.llm.prompts import load_prompt
from tests.conftest import ROOT
from tests.waiting import GENEROUS_S

CRAWL = "CC-MAIN-2099-01"
SIZES = [6000, 8000, 10000, 12000]  # 36,000 bytes in all
KEYS = [f"crawl-data/{CRAWL}/segments/{i // 2}/warc/part-{i}.warc.gz" for i in range(len(SIZES))]
# round figures: 10^6 documents per MB makes the 36,000 bytes 36,000 documents
EASY = ["documents.docs_per_mb=1000000", "documents.words_per_doc=1500", "documents.tokens_per_word=1",
        "documents.curate_kept=0.5", "documents.dedup_kept=0.5", "cpu.curate_docs_per_core_s=10",
        "cpu.dedup_words_per_core_s=7500", "cpu.fasttext_docs_per_core_s=2.5",
        "quality.classifier_docs_per_gpu_s.H100=2.5", "quality.bucket_exponent=1", "llm.chat_tokens=0"]


@pytest.fixture
def fake_crawl(s3_client, s3_server):
    with contextlib.suppress(s3_client.exceptions.BucketAlreadyOwnedByYou):
        s3_client.create_bucket(Bucket="commoncrawl")
    listing = f"crawl-data/{CRAWL}/warc.paths.gz"
    for key, size in zip(KEYS, SIZES, strict=True):
        s3_client.put_object(Bucket="commoncrawl", Key=key, Body=b"\0" * size)
    s3_client.put_object(Bucket="commoncrawl", Key=listing, Body=gzip.compress("\n".join(KEYS).encode()))
    yield f"storage.endpoint_url={s3_server}"
    for key in [*KEYS, listing]:
        s3_client.delete_object(Bucket="commoncrawl", Key=key)


def run_json(capsys, recipe: str, sets: list[str], *extra: str) -> dict:
    argv = ["--crawl", CRAWL, "--recipe", f"jobs/recipes/{recipe}", "--json", *extra]
    for assignment in sets:
        argv += ["--set", assignment]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def template_words(name: str) -> int:
    prompt = load_prompt(name)
    return len(prompt.system.split()) + len(prompt.user.replace("{text}", " ").split())


def test_fineweb_plan_counts_every_shard(fake_crawl, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run_json(capsys, "fineweb.yaml", [fake_crawl, "documents.docs_per_mb=1000000"],
                      "--bench", '{"curate_docs_per_core_s": 10}',
                      "--prices", "cpu_core_hour=0.5, s3_requests_per_1000=250,egress_per_gb=1000,"
                      "s3_put_per_1000=0,s3_get_per_1000=0")
    assert result["crawl"] == {"crawl": CRAWL, "listing": f"s3://commoncrawl/crawl-data/{CRAWL}/warc.paths.gz",
                               "shards": 4, "sampled": 4, "bytes": 36000.0, "bytes_error95": 0.0}
    assert result["documents"] == 36000.0
    # 36,000 docs / 10 docs/s/core = 3,600 core-seconds = 1 core-hour, at 0.5 $
    assert result["rows"] == [{"stage": "curate", "what": "fineweb: read, extract, filter", "docs": 36000.0,
                               "core_hours": 1.0, "gpu_hours": 0.0, "requests": 0.0, "input_tokens": 0.0,
                               "output_tokens": 0.0, "cost": 0.5}]
    # 4 shards x 2 requests at 250 $ per 1000 = 2 $; 36,000 bytes = 3.6e-5 GB at 1000 $ = 0.036 $
    assert result["s3"] == {"requests": 8.0, "cost": pytest.approx(2.036, rel=1e-12)}
    assert result["totals"] == {"core_hours": 1.0, "gpu_hours": 0.0, "cost": pytest.approx(2.536, rel=1e-12)}
    assert result["cpu"]["measured"] == '--bench {"curate_docs_per_core_s": 10}'


def test_sampled_sizes_extrapolate_with_their_error(fake_crawl, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    crawl = run_json(capsys, "fineweb.yaml", [fake_crawl, "listing.sample=2"])["crawl"]
    # shards 0 and 2 (6,000 and 10,000 bytes): 4 * 8,000; s = 2000 * sqrt(2)
    assert (crawl["sampled"], crawl["bytes"]) == (2, 32000.0)
    assert crawl["bytes_error95"] == pytest.approx(1.96 * 4 * 2000 * math.sqrt(2) / math.sqrt(2) * math.sqrt(0.5),
                                                   rel=1e-12)


def test_mixture_plan_by_hand(fake_crawl, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run_json(capsys, "mixture.yaml", [fake_crawl, *EASY], "--prices",
                      "cpu_core_hour=0.5,gpu_hour.H100=2,s3_put_per_1000=0,s3_get_per_1000=0")
    rows = {r["what"]: r for r in result["rows"]}
    # 36,000 read -> 18,000 curated -> 9,000 deduped; every CPU stage and classifier takes 3,600 s
    assert [(r["stage"], r["docs"], r["core_hours"], r["gpu_hours"]) for r in result["rows"][:6]] == [
        ("curate", 36000.0, 1.0, 0.0), ("dedup", 18000.0, 1.0, 0.0), ("quality", 9000.0, 1.0, 0.0),
        ("quality", 9000.0, 0.0, 1.0), ("quality", 9000.0, 0.0, 1.0), ("quality", 9000.0, 0.0, 1.0)]

    def llm(what, docs, chunks, chunk, answer, rates, tp):
        name = what.split(": ")[1].split(" (")[0]
        requests = docs * chunks
        tokens_in, tokens_out = requests * (template_words(name) + chunk), requests * answer
        row = rows[what]
        assert (row["docs"], row["requests"]) == pytest.approx((docs, requests), rel=1e-12)
        assert (row["input_tokens"], row["output_tokens"]) == pytest.approx((tokens_in, tokens_out), rel=1e-12)
        assert row["gpu_hours"] == pytest.approx((tokens_in / rates[0] + tokens_out / rates[1]) * tp / 3600, rel=1e-12)
        return row["gpu_hours"]

    qwen, llama = (20000, 4000), (12000, 2000)  # plan.yaml's H100 figures: prompt, generated tokens/s per replica
    gpu = 3.0  # the three classifiers
    # Nemotron-CC knowledge prompts on buckets 18-19 (2/20 of 9,000); answers 0.7 of a chunk
    gpu += llm("rephrase-nemotron: nemotron_qa (Qwen/Qwen2.5-7B-Instruct x1)", 900, 2, 750, 525, qwen, 1)
    gpu += llm("rephrase-nemotron: nemotron_distill (Qwen/Qwen2.5-7B-Instruct x1)", 900, 1, 1500, 1050, qwen, 1)
    gpu += llm("rephrase-nemotron: nemotron_extract (Qwen/Qwen2.5-7B-Instruct x1)", 900, 2, 750, 525, qwen, 1)
    gpu += llm("rephrase-nemotron: nemotron_list (Qwen/Qwen2.5-7B-Instruct x1)", 900, 2, 750, 525, qwen, 1)
    # REWIRE on buckets 7-17 (11/20); thinking + rewrite: twice the draft; 4 GPUs a replica
    gpu += llm("rewire: rewire (meta-llama/Llama-3.3-70B-Instruct x4)", 4950, 1, 1500, 3000, llama, 4)
    # TPT on a tenth of buckets 12-19 (8/20 * 0.1), the first 2,000 tokens; 1,500 tokens of thinking
    gpu += llm("tpt: tpt (Qwen/Qwen2.5-7B-Instruct x1)", 360, 1, 1500, 1500, qwen, 1)
    assert len(result["rows"]) == 12
    assert result["totals"]["core_hours"] == 3.0
    assert result["totals"]["gpu_hours"] == pytest.approx(gpu, rel=1e-12)
    assert result["totals"]["cost"] == pytest.approx(3.0 * 0.5 + gpu * 2, rel=1e-12)


def test_the_runs_bucket_requests_are_a_row_per_job_at_their_prices(fake_crawl, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    figures = {"curate": "{get: 2, put: 3, head: 1, list: 0.5}", "dedup": "{get: 1, put: 1, post: 2}",
               "quality": "{get: 1, put: 2, list: 0.25}", "synth": "{get: 1, put: 4, head: 1}"}
    sets = [fake_crawl, *EASY, *(f"stage_requests.{k}={v}" for k, v in figures.items())]
    result = run_json(capsys, "mixture.yaml", sets,
                      "--prices", "cpu_core_hour=0,gpu_hour.H100=0,s3_put_per_1000=1000,s3_get_per_1000=100")
    # 4 shards; per shard: PUT + POST + LIST at 1 $ a request, GET + HEAD at 0.1 $
    synth = {"stage": "synth", "get": 4.0, "put": 16.0, "head": 4.0, "list": 0.0, "post": 0.0, "requests": 24.0,
             "cost": pytest.approx(4 * (4 + 0.2), rel=1e-12)}
    assert result["run_requests"] == [
        {"stage": "curate", "what": "jobs/recipes/fineweb.yaml", "get": 8.0, "put": 12.0, "head": 4.0, "list": 2.0,
         "post": 0.0, "requests": 26.0, "cost": pytest.approx(4 * (3.5 + 0.3), rel=1e-12)},
        {"stage": "dedup", "what": "jobs/recipes/dedup.yaml", "get": 4.0, "put": 4.0, "head": 0.0, "list": 0.0,
         "post": 8.0, "requests": 16.0, "cost": pytest.approx(4 * (3 + 0.1), rel=1e-12)},
        {"stage": "quality", "what": "jobs/recipes/quality.yaml", "get": 4.0, "put": 8.0, "head": 0.0, "list": 1.0,
         "post": 0.0, "requests": 13.0, "cost": pytest.approx(4 * (2.25 + 0.1), rel=1e-12)},
        {**synth, "what": "jobs/recipes/rephrase-nemotron.yaml"}, {**synth, "what": "jobs/recipes/rewire.yaml"},
        {**synth, "what": "jobs/recipes/tpt.yaml"}]
    assert result["totals"]["cost"] == pytest.approx(4 * (3.8 + 3.1 + 2.35 + 3 * 4.2), rel=1e-12)


def test_a_job_without_request_figures_fails_before_any_request(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["--crawl", CRAWL, "--recipe", "jobs/recipes/mixture.yaml", "--set", "storage.endpoint_url=http://127.0.0.1:9",
            "--set", "stage_requests={curate: {get: 1}}"]
    assert main(argv) == 2
    assert capsys.readouterr().err == ("error: stage_requests: no dedup figures (python -m benchmarks.control_plane "
                                       "measures them)\n")


def run_cli(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jobs.plan", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=GENEROUS_S, env=os.environ.copy())
    return done, time.monotonic() - start


def test_cli_prints_the_table(fake_crawl, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"curate_docs_per_core_s": 10, "measured": "a test machine"}))
    done, _ = run_cli("--crawl", CRAWL, "--recipe", "jobs/recipes/fineweb.yaml", "--set", fake_crawl,
                      "--set", "documents.docs_per_mb=1000000", "--set", "stage_requests.curate={get: 1, put: 2}",
                      "--bench", str(bench), "--prices", "cpu_core_hour=2,s3_put_per_1000=125,s3_get_per_1000=250")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"plan: {CRAWL} with jobs/recipes/fineweb.yaml, GPU stages on H100",
                         "input: 4 shards, 36,000 bytes = 3.6e-08 TB (sizes of 4 shards read)",
                         "documents: 36.00k read, 1,101 tokens each after curation"]
    assert [line.split() for line in lines[4:9]] == [
        ["stage", "what", "docs", "requests", "in", "tokens", "out", "tokens", "core-hours", "GPU-hours", "cost", "$"],
        ["curate", "fineweb:", "read,", "extract,", "filter", "36.00k", "1.00", "2.00"],
        ["s3", "8", "requests,", "3.6e-08", "TB", "read", "0.00"],
        # 4 GETs at 0.25 $, 8 PUTs at 0.125 $
        ["s3", "curate", "jobs/recipes/fineweb.yaml:", "GET", "4,", "PUT", "8", "12", "2.00"],
        ["total", "1.00", "0.00", "4.00"]]
    assert lines[-1] == "CPU throughput: a test machine"


def test_unknown_crawl_fails_in_bounded_time_with_one_line(fake_crawl):
    done, seconds = run_cli("--crawl", "CC-MAIN-2099-02", "--recipe", "jobs/recipes/mixture.yaml",
                            "--set", fake_crawl)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("error: crawl CC-MAIN-2099-02: no listing at "
                           "s3://commoncrawl/crawl-data/CC-MAIN-2099-02/warc.paths.gz: not found\n")
    assert seconds < 120  # bounded, not hung (slack for a busy machine)


@pytest.mark.parametrize(("crawl", "sets", "message"), [
    (CRAWL, ["documents.docs_per_gb=3"], "error: documents.docs_per_gb: unknown key; did you mean docs_per_mb?"),
    (CRAWL, ["gpu=L4"], "error: prices.gpu_hour: no price for L4"),
    (CRAWL, ["quality.classifier_docs_per_gpu_s={}"], "error: quality.classifier_docs_per_gpu_s: no H100 figure"),
    ("2099-01", [], "error: --crawl: '2099-01' is not a crawl id like CC-MAIN-2024-22"),
])
def test_bad_settings_fail_before_any_request(capsys, crawl, sets, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["--crawl", crawl, "--recipe", "jobs/recipes/mixture.yaml", "--set", "storage.endpoint_url=http://127.0.0.1:9"]
    for assignment in sets:
        argv += ["--set", assignment]
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"
