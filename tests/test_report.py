"""The run report of a real mixture run (real Common Crawl pages through every stage), rendered by headless
Chromium: the numbers in the rendered page are the numbers in the run's stats, ledgers and files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lxml.html
import pyarrow.dataset as pads
import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType
from PIL import Image

from jobs.common.recipe import load_model
from jobs.pipeline import MixtureRecipe, run
from jobs.report import main, newest_run
from operators.io.storage import Storage
from operators.quality.buckets import LABELS
from tests.conftest import ROOT, write_warc
from tests.scripted_llm import ScriptedLLM


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; without it the tests are skipped, except on CI (CI installs it)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (CI installs Debian's chromium package)")
        pytest.skip("chromium not found: apt-get install -y chromium to render the report")
    return path


def render(chromium: str, html: Path, screenshot: Path) -> lxml.html.HtmlElement:
    """The page as headless Chromium built it (its DOM), and a screenshot of it."""
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={html.parent / 'chrome'}"]
    dom = subprocess.run([*browser, "--dump-dom", html.as_uri()], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    subprocess.run([*browser, f"--screenshot={screenshot}", "--window-size=1200,3000", html.as_uri()],
                   capture_output=True, check=True, timeout=60)
    return lxml.html.fromstring(dom)


def charts(dom, section: str) -> list[dict[str, str]]:
    """Each chart of a section as {bar label: the text after the bar}."""
    return [{row.xpath('string(text[@class="label"])'): row.xpath('string(text[@class="value"])')
             for row in svg.xpath('.//g[@class="row"]')} for svg in dom.xpath(f'//section[@id="{section}"]//svg')]


def headline(dom) -> list[list[str]]:
    return [[cell.text_content() for cell in row.xpath("td")] for row in dom.xpath('//section[@id="headline"]//tr')
            if row.xpath("td")]


def copies(shared_data: Path, path: Path) -> Path:
    """A shard of real pages seen before: the first 150 of ``real-pages-dev.warc.gz`` as they are, and the first 50
    once more with a sentence added."""
    with open(shared_data / "real-pages-dev.warc.gz", "rb") as f:
        pages = [{"url": r.headers["WARC-Target-URI"], "body": r.reader.read()}
                 for r in ArchiveIterator(f, record_types=WarcRecordType.response)][:150]
    again = [{"url": f"{p['url']}?again", "body": p["body"] + b"<p>This page was captured again.</p>"} for p in pages]
    return write_warc(path, pages + again[:50])


def answer(messages: list[dict]) -> str:
    """REWIRE: the draft, then its words backwards (faithful, twice as long, not a copy); TPT: a thought."""
    prompt = messages[-1]["content"]
    if "<improved response starts>" in prompt:
        draft = prompt.split("Draft:\n", 1)[1]
        improved = f"{draft}\n\n{' '.join(reversed(draft.split()))}"
        return f"<thinking starts>plan<thinking ends><improved response starts>{improved}<improved response ends>"
    return "<think>The page explains its subject; the second part follows from the first.</think>"


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, shared_data, ray_local, tiny_bert, tiny_fasttext) -> Path:
    """A mixture run over three real shards (one of pages seen before): curate, dedup, fastText buckets, REWIRE
    and TPT on a scripted LLM."""
    out = tmp_path_factory.mktemp("report")
    shards = [shared_data / "real-pages-dev.warc.gz", shared_data / "whirlwind.warc.gz",
              copies(shared_data, out / "CC-MAIN-2024-22-copies.warc.gz")]
    server = ScriptedLLM(answer)
    engine = ["llm.engine=openai", "llm.model=scripted", f"llm.endpoint.url={server.url}", f"tokenizer={tiny_bert}"]
    spark = ["spark.master=local[2]", "spark.driver_memory=2g", "spark.shuffle_partitions=4"]
    quality = [f"classifiers=[{{name: dclm, kind: fasttext, model: {tiny_fasttext}}}]", "buckets.classifiers=[dclm]",
               "buckets.sample_fraction=1.0", "buckets.calibrate_on=baseline-heldout-real-pages", "cache.enabled=false"]
    synthesize = [{"recipe": str(ROOT / "jobs" / "recipes" / "rewire.yaml"), "set": ["select.min=0", *engine]},
                  {"recipe": str(ROOT / "jobs" / "recipes" / "tpt.yaml"),
                   "set": ["select={column: quality_bucket, min: 0, fraction: 0.5}", *engine]}]
    recipe = load_model(MixtureRecipe, str(ROOT / "jobs" / "recipes" / "mixture.yaml"), [
        f"root={out}", f"input={json.dumps([str(s) for s in shards])}", f"stages.dedup.set={json.dumps(spark)}",
        f"stages.quality.set={json.dumps(quality)}", f"stages.synthesize={json.dumps(synthesize)}"])
    try:
        run(recipe)
    finally:
        server.close()
    return out / "mixture"


@pytest.mark.slow
def test_the_rendered_report_shows_the_runs_numbers(chromium, mixture, tmp_path):
    stats = {stage: json.loads((mixture / stage / "_stats.json").read_text()) for stage in ("filter", "dedup",
                                                                                             "quality")}
    mix = json.loads((mixture / "mixture.json").read_text())
    html, png = tmp_path / "report.html", tmp_path / "report.png"
    assert main([str(mixture), "--out", str(html)]) == 0
    assert not re.search(r"(src|href)\s*=|url\(|@import|<script", html.read_text())  # nothing fetched, no scripts
    dom = render(chromium, html, png)

    ops = stats["filter"]["operators"]
    operators, reasons = charts(dom, "funnel")
    assert operators == {name: f"{op['in']:,} in, {op['out']:,} out" for name, op in ops.items()}
    assert reasons == {reason: f"{n:,}" for op in ops.values() for reason, n in op["dropped"].items()}

    def languages(folder: str) -> Counter:
        table = pads.dataset(str(mixture / folder), format="parquet").to_table(columns=["language"])
        return Counter(lang for lang in table.column("language").to_pylist() if lang is not None)

    kept, dropped = languages("filter"), languages("rejected")
    assert sum(kept.values()) == stats["filter"]["rows"]["data"] and len(kept + dropped) <= 20
    assert charts(dom, "languages") == [{lang: f"{kept[lang]:,} kept, {dropped[lang]:,} dropped"
                                         for lang in kept + dropped}]

    shares = stats["quality"]["bucket_token_shares"]
    assert charts(dom, "buckets") == [{f"{k} {LABELS[k]}": f"{share:.4%}" for k, share in enumerate(shares)}]

    dedup = stats["dedup"]
    [clusters] = charts(dom, "clusters")
    sizes = {int(size): int(text.removesuffix(" clusters").replace(",", "")) for size, text in clusters.items()}
    assert sum(sizes.values()) == sum(dedup["clusters"].values()) > 0
    assert sum((size - 1) * n for size, n in sizes.items()) == dedup["removed"]
    assert max(sizes) == dedup["largest_cluster"]

    assert charts(dom, "kinds") == [{kind: f"{k['tokens']:,} tokens, {k['documents']:,} documents"
                                     for kind, k in mix["kinds"].items()}]
    assert set(mix["kinds"]) == {"real", "rewritten", "thought"}

    entries = [json.loads(p.read_text()) for p in sorted((mixture / "filter" / "_ledger").glob("*.json"))]
    timed = {e["shard"]: (next(iter(e["operators"].values()))["in"], e["bytes_read"], e["seconds"]) for e in entries}
    assert charts(dom, "throughput") == [{shard: f"{docs / s:,.1f} docs/s, {size / s / 1e6:,.2f} MB/s ({docs:,} docs "
                                                 f"in {s:g} s)" for shard, (docs, size, s) in timed.items()}]
    assert timed["real-pages-dev.warc"][0] == 314

    tpt = json.loads((mixture / "synth" / "tpt" / "_stats.json").read_text())
    rows = headline(dom)
    assert ["filter", "documents kept", f"{stats['filter']['rows']['data']:,}"] in rows
    assert ["dedup", "documents kept", f"{dedup['kept']:,}"] in rows
    assert ["quality", "tokens", f"{stats['quality']['tokens']:,}"] in rows
    assert ["synth/tpt", "documents written", f"{tpt['rows']['data']:,}"] in rows
    assert ["mixture/mixture.json", "tokens", f"{mix['tokens']:,}"] in rows

    image = Image.open(png)
    assert image.size == (1200, 3000) and len(image.convert("RGB").getcolors(1 << 24)) > 50


@pytest.mark.slow
def test_one_jobs_folder_on_s3(chromium, mixture, tmp_path, s3_client, s3_server):
    s3_client.create_bucket(Bucket="runs")
    for path in (mixture / "dedup").rglob("*"):
        if path.is_file():
            s3_client.upload_file(str(path), "runs", f"mixture/dedup/{path.relative_to(mixture / 'dedup')}")
    html, local = tmp_path / "report.html", tmp_path / "local.html"
    done = subprocess.run([sys.executable, "-m", "jobs.report", "s3://runs/mixture/dedup", "--out", str(html),
                           "--endpoint-url", s3_server], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert main([str(mixture / "dedup"), "--out", str(local)]) == 0
    assert html.read_text().replace("s3://runs/mixture/dedup", "<root>") == local.read_text().replace(
        str(mixture / "dedup"), "<root>")
    dom = render(chromium, html, tmp_path / "report.png")
    dedup = json.loads((mixture / "dedup" / "_stats.json").read_text())
    assert headline(dom) == [["dedup", figure, f"{dedup[key]:,}"] for figure, key in (
        ("documents in", "input"), ("documents kept", "kept"), ("exact duplicates", "exact_duplicates"),
        ("fuzzy duplicates", "fuzzy_duplicates"), ("URL duplicates", "url_duplicates"),
        ("largest cluster", "largest_cluster"))]
    assert sum(int(t.removesuffix(" clusters")) for t in charts(dom, "clusters")[0].values()) == sum(
        dedup["clusters"].values())
    for section in ("funnel", "languages", "buckets", "kinds", "throughput"):
        assert dom.xpath(f'string(//section[@id="{section}"]/p)') == "Not in this run."


def test_a_folder_without_a_run_is_refused(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "report.html")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: no _stats.json, _ledger/ entry or mixture.json under it\n"


def test_with_no_run_root_the_run_written_last_under_the_output_root_is_reported(tmp_path, capsys):
    """``make run`` then ``make report``: the run is the folder right under the output root that holds the newest
    ``_stats.json`` or ``mixture.json`` (whichever stage wrote it); hidden folders are not runs."""
    now = time.time()

    def write(rel: str, age: float) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (now - age, now - age))

    for rel, age in [("fineweb/filter/_stats.json", 40), ("mixture/quality/_stats.json", 30),
                     ("mixture/mixture.json", 20), ("fineweb/dedup/_stats.json", 10), (".old/x/_stats.json", 0)]:
        write(rel, age)
    storage = Storage()
    assert newest_run(storage, str(tmp_path)) == (f"{tmp_path}/fineweb", f"{tmp_path}/fineweb/dedup/_stats.json")
    write("mixture/synth/tpt/_stats.json", 5)
    assert newest_run(storage, f"{tmp_path}/") == (f"{tmp_path}/mixture", f"{tmp_path}/mixture/synth/tpt/_stats.json")
    write("_stats.json", 1)  # the output root is itself one job's output
    assert newest_run(storage, str(tmp_path)) == (str(tmp_path), f"{tmp_path}/_stats.json")

    assert main(["--under", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path}/nothing: no run under it (no _stats.json or mixture.json);"
                                       " make run writes one\n")
