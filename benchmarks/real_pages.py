"""Main-content text of the real pages in a WARC (resiliparse), the raw material of the benchmarks."""

from __future__ import annotations

from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import HTMLTree

DEFAULT_WARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-pages-dev.warc.gz"


def real_texts(warc: Path = DEFAULT_WARC) -> list[str]:
    texts = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
            body = rec.reader.read()
            text = extract_plain_text(HTMLTree.parse_from_bytes(body, detect_encoding(body)), main_content=True)
            if text.strip():
                texts.append(text)
    return texts
