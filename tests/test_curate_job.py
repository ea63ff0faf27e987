"""End-to-end: the curation job on local Ray, with input and output on a real local S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from jobs.curate.job import check_columns, run
from jobs.curate.recipe import load_recipe
from operators.schema import output_schema
from tests.conftest import ENGLISH, ROOT, write_warc, write_wet
from tests.waiting import GENEROUS_S

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")
WET_DOCS = [
    {"url": "https://wet.example.org/english", "text": "\n".join(ENGLISH)},
    {"url": "https://wet.example.org/short", "text": "Buy now."},
]


def _s3fs(endpoint: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint.removeprefix("http://"), scheme="http",
                             region="us-east-1")


def _read(fs, path: str):
    return pads.dataset(path, filesystem=fs, format="parquet").to_table()


@pytest.mark.slow
def test_job_reads_and_writes_s3(tmp_path, s3_server, s3_client, ray_local, sample_pages):
    s3_client.create_bucket(Bucket="crawl")
    warc = write_warc(tmp_path / "CC-MAIN-2024-22-00000.warc.gz", sample_pages)
    wet = write_wet(tmp_path / "CC-MAIN-2024-22-00000.warc.wet.gz", WET_DOCS)
    for f in (warc, wet):
        s3_client.upload_file(str(f), "crawl", f"in/{f.name}")
    recipe = load_recipe(RECIPE, ["input.paths=s3://crawl/in/*.gz", "output.root=s3://crawl/out",
                                  f"storage.endpoint_url={s3_server}"])

    stats = run(recipe)

    fs = _s3fs(s3_server)
    kept = _read(fs, "crawl/out/fineweb/filter/CC-MAIN-2024-22")
    assert kept.schema.remove_metadata() == output_schema(check_columns(recipe)).remove_metadata()
    assert sorted(kept.column("url").to_pylist()) == ["https://town.example.org/history",
                                                      "https://wet.example.org/english"]
    assert set(kept.column("language").to_pylist()) == {"eng_Latn"}
    assert kept.column("filter_reason").null_count == kept.num_rows
    rejected = _read(fs, "crawl/out/fineweb/rejected/CC-MAIN-2024-22")
    reasons = dict(zip(rejected.column("url").to_pylist(), rejected.column("filter_reason").to_pylist(), strict=True))
    assert reasons["https://stadt.example.de/geschichte"] == "language.not_allowed"
    assert reasons["https://town.example.org/logo.png"] == "extract.non_html"
    assert reasons["https://www.example.net/page"] == "url.blocklist"
    assert reasons["https://town.example.org/menu"].split(".")[0] in ("language", "gopher_repetition",
                                                                      "gopher_quality")
    assert reasons["https://wet.example.org/short"].startswith(("language.", "gopher_"))
    assert kept.num_rows + rejected.num_rows == len(sample_pages) + len(WET_DOCS)

    written = json.loads(s3_client.get_object(Bucket="crawl", Key="out/fineweb/filter/_stats.json")["Body"].read())
    assert written["shards"] == 2 and stats["shards"] == 2
    assert written["rows"] == {"data": 2, "rejected": 5}
    assert written["read"] == {"read.conversion": 2, "read.response": 5}
    ops = written["operators"]
    assert list(ops) == [name for name, _ in recipe.steps]
    assert ops["url"] == {**ops["url"], "in": 7, "out": 6, "dropped": {"url.blocklist": 1}}
    assert ops["extract"]["dropped"] == {"extract.non_html": 1}
    assert ops["fineweb_quality"]["out"] == 2 and ops["pii"]["out"] == 2
    for name, op in ops.items():
        assert op["in"] - op["out"] == sum(op["dropped"].values()), name
    ledger = s3_client.list_objects_v2(Bucket="crawl", Prefix="out/fineweb/filter/_ledger/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in ledger["Contents"]) == [
        "CC-MAIN-2024-22-00000.warc.json", "CC-MAIN-2024-22-00000.warc.wet.json"]


@pytest.mark.slow
def test_annotate_mode_keeps_every_document_with_its_reason(tmp_path, ray_local, sample_pages):
    write_warc(tmp_path / "in.warc.gz", sample_pages)
    recipe = load_recipe(RECIPE, [f"input.paths={tmp_path}/in.warc.gz", f"output.root={tmp_path}/out",
                                  "mode=annotate"])
    run(recipe)
    kept = pads.dataset(f"{tmp_path}/out/fineweb/filter", format="parquet").to_table()
    rejected = pads.dataset(f"{tmp_path}/out/fineweb/rejected", format="parquet").to_table()
    reasons = dict(zip(kept.column("url").to_pylist(), kept.column("filter_reason").to_pylist(), strict=True))
    assert reasons["https://town.example.org/history"] is None
    assert reasons["https://stadt.example.de/geschichte"] == "language.not_allowed"
    assert reasons["https://www.example.net/page"] == "url.blocklist"
    # A German page still gets every signal, so it can be re-thresholded later.
    german = next(r for r in kept.to_pylist() if r["url"] == "https://stadt.example.de/geschichte")
    assert german["gopher_word_count"] is not None and german["language"] == "deu_Latn"
    assert rejected.column("filter_reason").to_pylist() == ["extract.non_html"]


@pytest.mark.slow
def test_resume_skips_done_shards_and_loses_nothing(tmp_path, ray_local, sample_pages):
    for i in range(3):
        write_warc(tmp_path / f"shard-{i}.warc.gz", sample_pages)
    overrides = [f"input.paths={tmp_path}/shard-*.warc.gz", f"output.root={tmp_path}/out"]
    run(load_recipe(RECIPE, overrides))
    out = tmp_path / "out" / "fineweb"
    data = out / "filter" / "CC-MAIN-2024-22"

    def ids():
        kept = pads.dataset(str(out / "filter"), format="parquet").to_table().column("id").to_pylist()
        dropped = pads.dataset(str(out / "rejected"), format="parquet").to_table().column("id").to_pylist()
        return kept + dropped

    first = ids()
    assert len(first) == 3 * len(sample_pages) == len(set(first))
    untouched = (data / "shard-0.warc.parquet").stat().st_mtime_ns
    (out / "filter" / "_ledger" / "shard-1.warc.json").unlink()  # crashed before its ledger entry
    (data / "shard-2.warc.parquet").unlink()  # crashed before anything was published
    (out / "filter" / "_ledger" / "shard-2.warc.json").unlink()

    stats = run(load_recipe(RECIPE, overrides))

    second = ids()
    assert sorted(second) == sorted(first) and len(second) == len(set(second))
    assert (data / "shard-0.warc.parquet").stat().st_mtime_ns == untouched
    assert stats["shards"] == 3 and stats["rows"]["data"] + stats["rows"]["rejected"] == len(first)
    assert not list(data.glob("*.tmp-*"))


def test_cli_default_recipe_runs_on_the_shipped_sample(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-m", "jobs.curate", "--config", RECIPE,
                           "--set", f"output.root={tmp_path}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["shards"] == 3
    stats = json.loads((tmp_path / "fineweb" / "filter" / "_stats.json").read_text())
    assert stats["read"] == {"read.conversion": 1, "read.response": 39}
    assert sorted(p.name for p in (tmp_path / "fineweb" / "filter" / "CC-MAIN-2024-22").iterdir()) == [
        "whirlwind.warc.parquet", "whirlwind.warc.wet.parquet"]


def test_cli_rejects_unknown_key_before_doing_anything(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs.curate", "--config", RECIPE,
                           "--set", "output.rot=/x", "--set", "pipeline.language.treshold=0.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 2
    assert "output.rot" in done.stderr and "pipeline.language.treshold" in done.stderr


@pytest.mark.slow
def test_extraction_time_limit_holds_inside_ray_workers(tmp_path, ray_local, sample_pages):
    write_warc(tmp_path / "in.warc.gz", sample_pages)
    stats = run(load_recipe(RECIPE, [f"input.paths={tmp_path}/in.warc.gz", f"output.root={tmp_path}/out",
                                     "pipeline.extract.timeout_s=0.000001", "output.rejected=false"]))
    assert stats["operators"]["extract"]["dropped"] == {"extract.non_html": 1, "extract.timeout": 3}
    assert stats["rows"] == {"data": 0, "rejected": 0}
    assert not (tmp_path / "out" / "fineweb" / "rejected").exists()
