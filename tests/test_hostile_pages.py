"""Hostile page content through the whole curation chain: every record ends kept or rejected with a
named reason, the shard finishes, nothing crashes a worker (binary, huge, mis-encoded, NUL-laden,
pathological text for every filter's regular expressions)."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from jobs.curate import run
from jobs.curate.recipe import load_recipe
from tests.conftest import ENGLISH, ROOT, html_page, write_warc, write_wet

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")
WORDS = " ".join(ENGLISH)


def hostile_pages() -> list[dict]:
    russian = "История города начинается в двенадцатом веке, когда крестьяне поселились у реки. " * 40
    japanese = "町の歴史は十二世紀にさかのぼる。農民たちが川のほとりに住み着いた。" * 40
    pages = {
        "binary": (bytes(range(256)) * 800, "text/html"),
        "huge": (b"<html><body>" + b"<p>" + b"word " * 10_000_000 + b"</p></body></html>", "text/html"),
        "bad-utf8": (html_page("x", ENGLISH).replace(b"town", b"t\xff\xfewn"), "text/html; charset=utf-8"),
        "sjis-as-utf8": (f"<html><body><p>{japanese}</p></body></html>".encode("shift_jis"),
                         "text/html; charset=utf-8"),
        "cp1251-as-utf8": (f"<html><body><p>{russian}</p></body></html>".encode("cp1251"),
                           "text/html; charset=utf-8"),
        "nul-bytes": (html_page("x", ENGLISH).replace(b" ", b"\x00 "), "text/html"),
        "100k-lines": (b"<html><body>" + b"<p>a short line of text.</p>\n" * 100_000 + b"</body></html>", "text/html"),
        "no-spaces": (b"<html><body><p>" + b"a" * 2_000_000 + b"</p></body></html>", "text/html"),
        "giant-sentence": (f"<html><body><p>{(WORDS.replace('.', ',') + ' ') * 400}</p></body></html>".encode(),
                           "text/html"),
    }
    return [{"url": f"https://hostile.example.org/{name}", "body": body, "content_type": ctype}
            for name, (body, ctype) in pages.items()]


def hostile_texts() -> list[dict]:
    texts = {
        "one-giant-line": "x" * 3_000_000,
        "punctuation-runs": ("!?." * 400_000 + " ") * 2,  # spaCy's affix loop is quadratic on it
        "100k-short-lines": "\n".join(["Ok."] * 100_000),
        "repeated-paragraph": "\n\n".join([WORDS] * 5_000),
        "nul-text": WORDS.replace(" ", "\x00 "),
        "bullets-and-ellipses": "\n".join(["• item …"] * 50_000),
        "long-word-runs": " ".join(["a" * 10_000] * 300),
    }
    return [{"url": f"https://wet.example.org/{name}", "text": text} for name, text in texts.items()]


@pytest.mark.slow
@pytest.mark.timeout(180)  # a hang guard: unbounded, the punctuation run alone took minutes in gopher_repetition
@pytest.mark.parametrize("mode", ["filter", "annotate"])  # annotate: every filter sees every text
def test_hostile_pages_are_each_kept_or_rejected_with_a_reason(tmp_path, ray_local, mode):
    write_warc(tmp_path / "hostile.warc.gz", hostile_pages() + [{"url": "https://ok.example.org/",
                                                                "body": html_page("fine", ENGLISH)}])
    write_wet(tmp_path / "hostile.warc.wet.gz", hostile_texts())
    stats = run(load_recipe(RECIPE, [f"input.paths={tmp_path}/hostile.*", f"output.root={tmp_path}/out",
                                     f"mode={mode}"]))

    assert stats["failed"] == [] and stats["retried"] == []
    out = tmp_path / "out" / "fineweb"
    kept = pads.dataset(str(out / "filter"), format="parquet").to_table().to_pylist()
    rejected = pads.dataset(str(out / "rejected"), format="parquet").to_table().to_pylist()
    urls = sorted(r["url"] for r in kept + rejected)
    assert urls == sorted([p["url"] for p in hostile_pages()] + ["https://ok.example.org/"]
                          + [t["url"] for t in hostile_texts()])
    reasons = {r["url"].rstrip("/").rsplit("/", 1)[1]: r["filter_reason"] for r in kept + rejected}
    assert all(r["filter_reason"] for r in rejected) and reasons["ok.example.org"] is None
    if mode == "filter":
        assert not any(r["filter_reason"] for r in kept)
    else:
        assert all(r["text"] is None for r in rejected) and all(r["text"] for r in kept)
    assert reasons["huge"] == reasons["repeated-paragraph"] == "extract.too_large"  # over max_bytes, never held
    assert reasons["100k-lines"] == "gopher_repetition.dup_para_frac"
    written = json.loads((out / "filter" / "_stats.json").read_text())
    assert written["rows"] == {"data": len(kept), "rejected": len(rejected)}
    assert written["read"] == {"read.conversion": 7, "read.response": 10}


def test_a_page_that_needs_more_memory_than_the_limit_costs_that_page_only():
    from operators.extract.sandbox import Sandbox

    big = b"<html><body>" + b"<p>word word</p>" * 250_000 + b"</body></html>"  # 4 MB: about 175 MB to extract
    small = html_page("Town", ENGLISH[:2])
    pages = [(small, "text/html"), (big, "text/html"), (small, "text/html")]
    for memory_mb, rules in ((2048, [None, None, None]), (120, [None, "error", None])):
        sandbox = Sandbox("resiliparse", True, 30.0, memory_mb)
        try:
            results = sandbox.run(pages)
        finally:
            sandbox.close()
        assert [rule for _, rule in results] == rules, memory_mb
        assert results[0][0] == results[2][0] and results[0][0].startswith("The history of the town")


def test_pages_go_to_the_extraction_process_in_windows_and_a_death_costs_one_page(monkeypatch):
    from operators.extract import sandbox as sandbox_module

    big = b"<html><body>" + b"<p>word word</p>" * 250_000 + b"</body></html>"  # about 175 MB to extract
    pages = [(html_page(f"Town {k}", ENGLISH[:2]), "text/html") for k in range(5)]
    pages.insert(3, (big, "text/html"))
    sandbox = sandbox_module.Sandbox("resiliparse", True, 30.0, 2048)
    try:
        whole = sandbox.run(pages)  # the 4 MB page is a window of its own, the small ones go together
        monkeypatch.setattr(sandbox_module, "SEND_BYTES", 2 * len(pages[0][0]))  # two small pages a window
        assert sandbox.run(pages) == whole
        assert sandbox.restarts == 0
    finally:
        sandbox.close()
    assert [rule for _, rule in whole] == [None] * 6 and whole[0][0].startswith("The history of the town")
    sandbox = sandbox_module.Sandbox("resiliparse", True, 30.0, 120)  # the big page cannot be extracted
    try:
        results = sandbox.run(pages)
    finally:
        sandbox.close()
    assert [rule for _, rule in results] == [None, None, None, "error", None, None]
    assert [text for text, _ in results[:3] + results[4:]] == [text for text, _ in whole[:3] + whole[4:]]
    assert sandbox.restarts == 1
