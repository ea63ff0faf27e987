"""WARC/WET reading with fastwarc and HTML extraction, on WARCs written by warcio."""

from __future__ import annotations

import gzip
from collections import Counter

import pyarrow as pa

from operators.extract.html import Extract
from operators.extract.pages import decode_html
from operators.io.storage import Storage
from operators.io.warc import read_warc
from tests.conftest import ENGLISH, html_page, write_warc, write_wet


def _read(path, max_bytes=1_000_000, batch_size=100):
    counts, storage = Counter(), Storage()
    reader = storage.reader(str(path), storage.stat(str(path)))
    batches = list(read_warc(reader, str(path), path.name, "unknown", max_bytes, batch_size, counts, []))
    return pa.concat_tables(batches) if batches else None, counts


def test_warc_responses_become_rows_with_headers_and_offsets(tmp_path, sample_pages):
    path = write_warc(tmp_path / "x.warc.gz", sample_pages)
    table, counts = _read(path, batch_size=2)
    assert counts == {"read.response": 5}
    assert table.column("url").to_pylist() == [p["url"] for p in sample_pages]
    assert set(table.column("crawl").to_pylist()) == {"CC-MAIN-2024-22"}
    assert table.column("text").null_count == 5
    assert table.column("raw_content_type").to_pylist()[2] == "image/png"
    assert table.column("raw_html").to_pylist()[2] is None  # non-HTML bodies are not read
    assert table.column("raw_html").to_pylist()[0] == sample_pages[0]["body"]
    offsets = table.column("source_offset").to_pylist()
    assert offsets == sorted(offsets) and offsets[0] > 0
    with open(path, "rb") as f:  # each offset is the start of a gzip member holding that response
        f.seek(offsets[0])
        assert gzip.GzipFile(fileobj=f).read(200).startswith(b"WARC/1.")
    assert len(set(table.column("id").to_pylist())) == 5


def test_wet_conversion_records_carry_text_and_format_is_detected_from_records(tmp_path):
    path = write_wet(tmp_path / "looks-like.warc.gz", [{"url": "https://a.example/", "text": "Hello.\nWorld."}])
    table, counts = _read(path)
    assert counts == {"read.conversion": 1}
    assert table.column("text").to_pylist() == ["Hello.\nWorld."]
    assert table.column("raw_html").to_pylist() == [None]


def test_oversize_html_is_not_read(tmp_path):
    big = html_page("Big", ["word " * 1000])
    path = write_warc(tmp_path / "x.warc.gz", [{"url": "https://a.example/", "body": big}])
    table, _ = _read(path, max_bytes=1000)
    assert table.column("raw_html").to_pylist() == [None]
    assert table.column("raw_length").to_pylist()[0] > 1000
    out = Extract(max_bytes=1000)(table)
    assert out.column("filter_reason").to_pylist() == ["extract.too_large"]


def _raw(html: bytes | None, ctype: str | None = "text/html", length: int | None = None) -> pa.Table:
    return pa.table({"text": pa.array([None], pa.string()), "raw_html": pa.array([html], pa.binary()),
                     "raw_content_type": [ctype], "raw_length": [length if length is not None else len(html or b"")]})


def test_extraction_gives_main_text_and_reasons():
    out = Extract()(_raw(html_page("T", ENGLISH[:2])))
    assert out.column("text").to_pylist() == ["\n\n".join(ENGLISH[:2])]
    assert out.column("filter_reason").to_pylist() == [None]
    assert "raw_html" not in out.column_names
    assert Extract()(_raw(None, "application/pdf", 10)).column("filter_reason").to_pylist() == ["extract.non_html"]
    assert Extract()(_raw(b"<html><body></body></html>")).column("filter_reason").to_pylist() == ["extract.empty"]


def test_trafilatura_engine_is_selectable():
    out = Extract(engine="trafilatura")(_raw(html_page("T", ENGLISH)))
    assert ENGLISH[0][:60] in out.column("text")[0].as_py()


def test_charset_from_header_then_meta_then_detection():
    text = "Привет, как дела? Это проверка кодировки страницы."
    body = f"<html><body><p>{text}</p></body></html>".encode("cp1251")
    assert text in decode_html(body, "text/html; charset=windows-1251")
    meta = f'<html><head><meta charset="windows-1251"></head><body><p>{text}</p></body></html>'.encode("cp1251")
    assert text in decode_html(meta, "text/html")
    latin = f"<html><body><p>{'Größe und Übermaß, schöne Grüße aus Köln. ' * 20}</p></body></html>".encode("latin-1")
    assert "schöne Grüße" in decode_html(latin, None)
