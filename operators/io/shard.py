"""Process one input shard end to end: stream records, run the chain, write Parquet, then the ledger.

Both Parquet files are written to staging files and published whole; the ledger entry is written
last, so its presence means the shard is done (a crash before it leaves nothing that looks done).
A shard is done only when its input was read to the end: a read that fails for good, or an input
that is not a WARC/WET file, raises and leaves no ledger entry. The entry records the input's
size and ETag (or mtime), so a re-run redoes a shard whose input changed.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from operators.io.layout import Layout
from operators.io.ledger import commit_entry
from operators.io.listing import crawl_of
from operators.io.storage import Storage, discard
from operators.io.warc import read_warc
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
            self.writer.close()
            discard(self.path)


def process_shard(uri: str, shard: str, chain: Chain, schema: pa.Schema, storage: Storage,
                  layout: Layout, *, batch_size: int, max_bytes: int, keep_rejected: bool,
                  compression: str = "zstd") -> dict:
    """Run ``chain`` over shard ``uri``; return the ledger entry that was written."""
    started = time.time()
    counts: Counter = Counter()
    problems: list[dict] = []
    kept = _StagedParquet(storage, schema, compression)
    rejected = _StagedParquet(storage, schema, compression)
    identity = storage.stat(uri)
    reader = storage.reader(uri, identity)
    crawl = None
    try:
        for batch in read_warc(reader, uri, shard, crawl_of(uri) or "unknown", max_bytes, batch_size, counts,
                               problems):
            crawl = crawl or batch.column("crawl")[0].as_py()
            good, bad = chain(batch)
            kept.write(good, layout.data(crawl, shard))
            if keep_rejected:
                for part in bad:
                    rejected.write(part, layout.rejected(crawl, shard))
        crawl = crawl or crawl_of(uri) or "unknown"
        kept.write(pa.table({}), layout.data(crawl, shard))
        outputs = {"data": kept.publish(), "rejected": rejected.publish()}
    except BaseException:
        kept.abandon()
        rejected.abandon()
        raise
    finally:
        reader.close()
    if reader.failures:
        counts["read.retries"] = reader.failures
    entry = {
        "shard": shard,
        "source": uri,
        "crawl": crawl,
        "outputs": outputs,
        "rows": {"data": kept.rows, "rejected": rejected.rows},
        "input": identity,
        "read": dict(sorted(counts.items())),
        "problems": problems,
        "bytes_read": reader.offset,
        "operators": chain.stats_dict(),
        "seconds": round(time.time() - started, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return commit_entry(storage, layout.ledger(shard), entry)
