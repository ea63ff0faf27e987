"""Process one input shard end to end: stream records, run the chain, write Parquet, then the ledger.

Both Parquet files are written to staging files and published whole; the ledger entry is written
last, so its presence means the shard is done (a crash before it leaves nothing that looks done).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from operators.io.layout import Layout
from operators.io.listing import crawl_of
from operators.io.storage import Storage, discard
from operators.io.warc import gzip_tail_complete, read_warc
from operators.pipeline import Chain
from operators.schema import conform


class CountingReader:
    """Wrap a binary stream and count the bytes read from it."""

    def __init__(self, raw):
        self.raw = raw
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes += len(data)
        return data

    def tell(self) -> int:
        return self.bytes

    def close(self):
        self.raw.close()


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
    kept = _StagedParquet(storage, schema, compression)
    rejected = _StagedParquet(storage, schema, compression)
    crawl = None
    last_offset = 0
    stream = CountingReader(storage.open_read(uri))
    try:
        for batch in read_warc(stream, uri, max_bytes, batch_size, counts):
            crawl = crawl or batch.column("crawl")[0].as_py() or crawl_of(uri) or "unknown"
            last_offset = batch.column("source_offset")[-1].as_py()
            good, bad = chain(batch)
            kept.write(good, layout.data(crawl, shard))
            if keep_rejected:
                for part in bad:
                    rejected.write(part, layout.rejected(crawl, shard))
        crawl = crawl or crawl_of(uri) or "unknown"
        if not counts["read.corrupt_stream"]:
            with storage.open_read(uri) as tail:
                if not gzip_tail_complete(tail, last_offset):
                    counts["read.truncated"] += 1
        kept.write(pa.table({}), layout.data(crawl, shard))
        outputs = {"data": kept.publish(), "rejected": rejected.publish()}
    except BaseException:
        kept.abandon()
        rejected.abandon()
        raise
    finally:
        stream.close()
    entry = {
        "shard": shard,
        "source": uri,
        "crawl": crawl,
        "outputs": outputs,
        "rows": {"data": kept.rows, "rejected": rejected.rows},
        "read": dict(sorted(counts.items())),
        "bytes_read": stream.bytes,
        "operators": chain.stats_dict(),
        "seconds": round(time.time() - started, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    storage.write_text(layout.ledger(shard), json.dumps(entry, indent=1))
    return entry
