"""Stream WARC and WET files into Arrow batches of raw documents, with fastwarc.

The format is detected from the records: WARC ``response`` records carry HTTP + HTML (text is
extracted later); WET ``conversion`` records carry text already. Other record types
(``request``, ``metadata``, ``warcinfo``) are not documents; they are counted, not emitted.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator
from typing import IO

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecordType

from operators.io.listing import crawl_of
from operators.schema import DOCUMENT_FIELDS, RAW_FIELDS

HTML_TYPES = ("text/html", "application/xhtml+xml")
READ_FIELDS = [f for f in DOCUMENT_FIELDS if f.name in
               ("id", "text", "url", "crawl", "date", "source", "source_offset")]
READ_SCHEMA = pa.schema(READ_FIELDS + RAW_FIELDS + [pa.field("raw_length", pa.int64())])
WANTED = WarcRecordType.response | WarcRecordType.conversion | WarcRecordType.warcinfo


def _record_id(raw: str) -> str:
    return raw.strip("<>").removeprefix("urn:uuid:")


def _warcinfo_crawl(body: bytes) -> str | None:
    for line in body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "ispartof":
            return value.strip() or None
    return None


def read_warc(stream: IO[bytes], source: str, max_bytes: int, batch_size: int,
              counts: Counter) -> Iterator[pa.Table]:
    """Yield batches of raw documents from one WARC/WET stream.

    ``counts`` receives record counts by type and by problem (``read.<reason>``). HTML bodies
    larger than ``max_bytes`` and non-HTML bodies are not read into memory: their rows carry
    ``raw_length`` and ``raw_content_type`` so extraction can count them by reason.
    """
    crawl = crawl_of(source)
    rows: dict[str, list] = {f.name: [] for f in READ_SCHEMA}
    iterator = ArchiveIterator(stream, record_types=WANTED, parse_http=True)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - a broken stream (fastwarc may panic) is counted, earlier records kept
            counts["read.corrupt_stream"] += 1
            break
        try:
            kind = record.record_type
            if kind == WarcRecordType.warcinfo:
                crawl = _warcinfo_crawl(record.reader.read()) or crawl
                continue
            text, html, ctype, length = _payload(record, max_bytes)
            counts["read.response" if kind == WarcRecordType.response else "read.conversion"] += 1
            row = {
                "id": _record_id(record.record_id),
                "text": text,
                "url": record.headers.get("WARC-Target-URI"),
                "crawl": crawl,
                "date": record.headers.get("WARC-Date"),
                "source": source,
                "source_offset": record.stream_pos,
                "raw_html": html,
                "raw_content_type": ctype,
                "raw_length": length,
            }
        except Exception:  # noqa: BLE001 - one malformed record must not stop the shard
            counts["read.bad_record"] += 1
            continue
        for key, value in row.items():
            rows[key].append(value)
        if len(rows["id"]) >= batch_size:
            yield pa.Table.from_pydict(rows, schema=READ_SCHEMA)
            rows = {key: [] for key in rows}
    if rows["id"]:
        yield pa.Table.from_pydict(rows, schema=READ_SCHEMA)


def gzip_tail_complete(stream: IO[bytes], offset: int) -> bool:
    """Whether every gzip member from ``offset`` (the last document read) to the end is whole.

    fastwarc stops without an error at a member cut short, which would lose the records in it
    silently; checking the few members after the last record read makes that loss countable.
    """
    stream.seek(offset)
    data = stream.read()
    if not data.startswith(b"\x1f\x8b"):
        return True  # not gzip (or nothing left): nothing to check
    while data:
        member = zlib.decompressobj(wbits=31)
        try:
            member.decompress(data)
        except zlib.error:
            return False
        if not member.eof:
            return False
        data = member.unused_data
    return True


def _payload(record, max_bytes: int) -> tuple[str | None, bytes | None, str | None, int]:
    """(text, html, content type, payload length) of a response or conversion record."""
    if record.record_type == WarcRecordType.conversion:
        body = record.reader.read()
        return body.decode("utf-8", "replace"), None, "text/plain", len(body)
    ctype = (record.http_content_type or "").lower() or None
    if ctype is not None and ctype not in HTML_TYPES:
        return None, None, ctype, record.content_length
    body = record.reader.read(max_bytes + 1)
    if len(body) > max_bytes:
        return None, None, ctype, record.content_length
    http_charset = record.http_charset
    return None, body, f"{ctype or ''}; charset={http_charset}" if http_charset else ctype, len(body)
