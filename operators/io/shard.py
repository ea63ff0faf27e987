"""Process one input shard end to end: stream records, run the chain, write Parquet, then the ledger.

Both Parquet files are written to staging files and published whole; the ledger entry is written
last, so its presence means the shard is done (a crash before it leaves nothing that looks done).
A shard is done only when its input was read to the end: a read that fails for good, or an input
that is not a WARC/WET file, raises and leaves no ledger entry. The entry records the input's
size and ETag (or mtime), so a re-run redoes a shard whose input changed.

A large gzipped shard may be processed as ``n`` parts, each the gzip members that start in one
``n``-th of its bytes (:func:`part_range`); a part is a unit of its own (output files and ledger
entry named by :func:`unit_name`), and ids do not depend on the split.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from operators.filters.languages import rows_by_language
from operators.io.layout import Layout
from operators.io.ledger import commit_entry
from operators.io.listing import crawl_of
from operators.io.storage import Storage, discard
from operators.io.warc import leading_crawl, read_warc
from operators.pipeline import Chain
from operators.schema import conform


class _StagedParquet:
    """A Parquet file written batch by batch to a staging path, opened on first use."""

    def __init__(self, storage: Storage, schema: pa.Schema, compression: str):
        self.storage, self.schema, self.compression = storage, schema, compression
        self.path = self.writer = None
        self.rows = 0

    def write(self, batch: pa.Table, target: str) -> None:
        if self.writer is None:
            self.target = target
            self.path = self.storage.staging_path(target)
            self.writer = pq.ParquetWriter(self.path, self.schema, compression=self.compression)
        if batch.num_rows:
            self.writer.write_table(conform(batch, self.schema))
            self.rows += batch.num_rows

    def publish(self) -> str | None:
        if self.writer is None:
            return None
        self.writer.close()
        self.storage.commit(self.path, self.target)
        return self.target

    def abandon(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError):  # closing flushes: on a full disk it fails again
                self.writer.close()
            discard(self.path)


PART_RE = re.compile(r"(?P<shard>.+)\.part(?P<k>\d+)-of(?P<n>\d+)")  # what unit_name gives a part


def unit_name(shard: str, part: tuple[int, int]) -> str:
    """The name of part ``k`` of ``n`` of a shard (the shard's own name when it is not split)."""
    k, n = part
    return shard if n == 1 else f"{shard}.part{k}-of{n}"


def part_range(size: int, part: tuple[int, int]) -> tuple[int, int | None]:
    """Byte range ``[start, end)`` of part ``k`` of ``n`` (``end`` None: to the end of the file)."""
    k, n = part
    return size * k // n, (size * (k + 1) // n if k + 1 < n else None)


def process_shard(uri: str, shard: str, chain: Chain, schema: pa.Schema, storage: Storage,
                  layout: Layout, *, batch_size: int, max_bytes: int, keep_rejected: bool,
                  compression: str = "zstd", part: tuple[int, int] = (0, 1), by_language: bool = False,
                  node: str | None = None) -> dict:
    """Run ``chain`` over shard ``uri`` (or one part of it); return the ledger entry that was written.

    ``by_language``: kept documents go to one file per language, ``<stage>/<language>/<crawl>/<shard>.parquet``
    (a shard with none kept leaves an empty ``und`` file). ``node``: the Ray node that ran it, for the ledger."""
    started = time.time()
    counts: Counter = Counter()
    problems: list[dict] = []
    kept = _StagedParquet(storage, schema, compression)
    per_language: dict[str, _StagedParquet] = {}
    rejected = _StagedParquet(storage, schema, compression)
    identity = storage.stat(uri)
    start, end = part_range(identity["size"], part)
    unit = unit_name(shard, part)
    crawl = crawl_of(uri) or "unknown"
    if start:
        first = storage.reader(uri, identity)
        try:
            crawl = leading_crawl(first, uri) or crawl
        finally:
            first.close()
    reader = storage.reader(uri, identity, start)
    folder = None  # the crawl of the first batch names the output folder
    try:
        for batch in read_warc(reader, uri, shard, crawl, max_bytes, batch_size, counts, problems, start, end):
            folder = folder or batch.column("crawl")[0].as_py()
            good, bad = chain(batch)
            if by_language:
                for language, rows in rows_by_language(good.column("language")):
                    language = language or "und"
                    writer = per_language.setdefault(language, _StagedParquet(storage, schema, compression))
                    writer.write(good.take(rows), layout.data(folder, unit, language))
            else:
                kept.write(good, layout.data(folder, unit))
            if keep_rejected:
                for rows in bad:
                    rejected.write(rows, layout.rejected(folder, unit))
        folder = folder or crawl
        if not by_language or not per_language:
            kept.write(pa.table({}), layout.data(folder, unit, "und" if by_language else None))
        writers = [kept] if kept.writer is not None else []
        writers += [per_language[language] for language in sorted(per_language)]
        published = [w.publish() for w in writers]
        outputs = {"data": published if by_language else published[0], "rejected": rejected.publish()}
    except BaseException:
        for writer in (kept, rejected, *per_language.values()):
            writer.abandon()
        raise
    finally:
        reader.close()
    if reader.failures:
        counts["read.retries"] = reader.failures
    entry = {
        "shard": shard,
        "part": list(part),
        "source": uri,
        "crawl": folder,
        "outputs": outputs,
        "rows": {"data": kept.rows + sum(w.rows for w in per_language.values()), "rejected": rejected.rows},
        "input": identity,
        "read": dict(sorted(counts.items())),
        "problems": problems,
        "bytes_read": reader.offset - start,
        "operators": chain.stats_dict(),
        "languages": chain.languages_dict(),
        "seconds": round(time.time() - started, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "node": node,
    }
    return commit_entry(storage, layout.ledger(unit), entry)
