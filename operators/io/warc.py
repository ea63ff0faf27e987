"""Turn the records of a WARC or WET file into Arrow batches of raw documents.

Records come from :func:`operators.io.records.read_records` (framed, checked, resynchronised
after damage); fastwarc parses each one. WARC ``response`` records carry HTTP + HTML (text is
extracted later); WET ``conversion`` records carry text already; the format is told from the
records. ``warcinfo`` gives the crawl name; other record types are not documents.

A document's ``id`` is unique in a run by construction: a hash of the shard name and the
record's place in the file, so two copies of a file, or two records sharing a WARC-Record-ID,
still give distinct ids. The WARC-Record-ID itself is kept in ``warc_record_id``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecordType

from operators.io.frames import Frame
from operators.io.layout import safe_segment
from operators.io.records import read_records
from operators.schema import DOCUMENT_FIELDS, RAW_FIELDS

HTML_TYPES = ("text/html", "application/xhtml+xml")
READ_FIELDS = [f for f in DOCUMENT_FIELDS if f.name in
               ("id", "warc_record_id", "text", "url", "crawl", "date", "source", "source_offset")]
READ_SCHEMA = pa.schema(READ_FIELDS + RAW_FIELDS + [pa.field("raw_length", pa.int64())])
TYPE_RE = re.compile(rb"\r\nWARC-Type:[ \t]*([A-Za-z]+)", re.IGNORECASE)
DOCUMENT_TYPES = (b"response", b"conversion")
HTTP_ALLOWANCE = 1 << 18  # bytes of a response record kept beyond max_bytes, for its HTTP headers
MAX_PROBLEMS = 1000  # problems listed with their offsets per shard (all are counted)


def document_id(shard: str, offset: int, index: int) -> str:
    return hashlib.blake2b(f"{shard}\0{offset}\0{index}".encode(), digest_size=16).hexdigest()


def warcinfo_crawl(body: bytes) -> str | None:
    """The ``isPartOf`` of a warcinfo record, if it is a safe folder name (it names an output folder)."""
    for line in body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "ispartof":
            value = value.strip()
            return value if safe_segment(value) else None
    return None


def leading_crawl(stream, source: str) -> str | None:
    """The crawl named by a warcinfo record in the file's first gzip member (a later part's crawl)."""
    for _, _, item in read_records(stream, source, 1 << 20, 0, 1):
        match = TYPE_RE.search(item.header) if isinstance(item, Frame) else None
        if match and match.group(1).lower() == b"warcinfo":
            return warcinfo_crawl(item.content)
    return None


def read_warc(stream, source: str, shard: str, crawl: str, max_bytes: int, batch_size: int,
              counts: Counter, problems: list[dict], start: int = 0, end: int | None = None) -> Iterator[pa.Table]:
    """Yield batches of raw documents from one WARC/WET stream.

    ``counts`` receives record counts by type and by problem (``read.<reason>``); ``problems``
    the first :data:`MAX_PROBLEMS` unreadable records with their offsets. ``crawl`` is used until
    a warcinfo record names one. HTML bodies larger than ``max_bytes`` and non-HTML bodies are
    not held: their rows carry ``raw_length`` and ``raw_content_type`` so extraction can count them.
    ``start``/``end``: read only the gzip members that start in this byte range (``stream`` is at ``start``).
    """
    rows: dict[str, list] = {f.name: [] for f in READ_SCHEMA}
    record_ids: set[str] = set()
    for offset, index, item in read_records(stream, source, max_bytes + HTTP_ALLOWANCE, start, end):
        if not isinstance(item, Frame):
            counts[f"read.{item.reason}"] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append({"offset": offset, "reason": item.reason, "detail": item.detail})
            continue
        match = TYPE_RE.search(item.header)
        kind = match.group(1).lower() if match else b""
        if kind == b"warcinfo":
            crawl = warcinfo_crawl(item.content) or crawl
            continue
        if kind not in DOCUMENT_TYPES:
            continue
        try:
            record = next(iter(ArchiveIterator(io.BytesIO(item.header + item.content + b"\r\n\r\n"),
                                               parse_http=kind == b"response")))
            text, html, ctype, length = _payload(record, item, max_bytes)
            record_id = record.record_id.strip("<>").removeprefix("urn:uuid:")
            row = {"id": document_id(shard, offset, index), "warc_record_id": record_id, "text": text,
                   "url": record.headers.get("WARC-Target-URI"), "crawl": crawl,
                   "date": record.headers.get("WARC-Date"), "source": source, "source_offset": offset,
                   "raw_html": html, "raw_content_type": ctype, "raw_length": length}
        except Exception as err:  # noqa: BLE001 - one record fastwarc cannot parse must not stop the shard
            counts["read.bad_record"] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append({"offset": offset, "reason": "bad_record", "detail": f"{type(err).__name__}: {err}"})
            continue
        counts[f"read.{kind.decode()}"] += 1
        if record_id in record_ids:
            counts["read.duplicate_record_id"] += 1
        record_ids.add(record_id)
        for key, value in row.items():
            rows[key].append(value)
        if len(rows["id"]) >= batch_size:
            yield pa.Table.from_pydict(rows, schema=READ_SCHEMA)
            rows = {key: [] for key in rows}
    if rows["id"]:
        yield pa.Table.from_pydict(rows, schema=READ_SCHEMA)


def _payload(record, frame: Frame, max_bytes: int) -> tuple[str | None, bytes | None, str | None, int]:
    """(text, html, content type, payload length) of a response or conversion record."""
    whole = frame.length == len(frame.content)
    if record.record_type == WarcRecordType.conversion:
        body = record.reader.read()
        if not whole or len(body) > max_bytes:
            return None, None, "text/plain", frame.length
        return body.decode("utf-8", "replace"), None, "text/plain", len(body)
    ctype = (record.http_content_type or "").lower() or None
    if ctype is not None and ctype not in HTML_TYPES:
        return None, None, ctype, frame.length
    body = record.reader.read(max_bytes + 1)
    if not whole or len(body) > max_bytes:
        return None, None, ctype, frame.length
    http_charset = record.http_charset
    return None, body, f"{ctype or ''}; charset={http_charset}" if http_charset else ctype, len(body)
