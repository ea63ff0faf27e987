"""Reading input files a batch at a time (dedup, export): the same rows whether a file is fetched whole or
streamed, and what each costs in S3 requests (counted by a proxy in front of the real local S3 server)."""

from __future__ import annotations

import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.dedup.spark_dedup import READ_BATCH
from operators.io import parquet_batches as pb
from operators.io.storage import Storage
from tests.faults import CountingProxy

ROWS = 5000


@pytest.fixture
def shard(s3_server, s3_client):
    """A one-row-group shard of ROWS documents (about 1.3 MB of text, compressed) on S3, the proxy, its footer."""
    rng = random.Random(7)
    table = pa.table({"id": [f"d{i}" for i in range(ROWS)],
                      "text": ["".join(rng.choices("abcdefghij klmnop", k=260)) for _ in range(ROWS)],
                      "url": [f"https://x.example/{i}" for i in range(ROWS)]})
    out = io.BytesIO()
    pq.write_table(table, out, data_page_size=32 << 10, use_dictionary=False)  # pages under the read buffer
    s3_client.create_bucket(Bucket="reading")
    s3_client.put_object(Bucket="reading", Key="in/s0.parquet", Body=out.getvalue())
    proxy = CountingProxy(s3_server)
    yield table, Storage(endpoint_url=proxy.url), proxy, pq.read_metadata(io.BytesIO(out.getvalue()))
    proxy.close()


def read(storage: Storage, columns: list[str]) -> pa.Table:
    return pa.Table.from_batches(list(pb.file_batches(storage, "s3://reading/in/s0.parquet", columns, READ_BATCH)))


def test_a_small_file_is_fetched_whole_in_one_data_request(shard):
    table, storage, proxy, _ = shard
    got = read(storage, ["id", "text", "language"])  # a column the file lacks is left out
    assert got.equals(table.select(["id", "text"]))
    assert max(len(b) for b in pb.file_batches(storage, "s3://reading/in/s0.parquet", ["id"], READ_BATCH)) == READ_BATCH
    proxy.reset()
    read(storage, ["id", "text"])
    assert proxy.counts() == {"GET": 2, "PUT": 0, "HEAD": 1, "LIST": 0, "POST": 0, "DELETE": 0}  # footer, data


def test_a_big_file_is_streamed_a_buffer_at_a_time_with_the_same_rows(shard, monkeypatch):
    table, storage, proxy, meta = shard
    monkeypatch.setattr(pb, "WHOLE_READ", 0)
    monkeypatch.setattr(pb, "READ_BUFFER", 128 << 10)
    proxy.reset()
    assert read(storage, ["id", "text"]).equals(table.select(["id", "text"]))
    text = pb.compressed_bytes(meta, ["text"])
    assert text > 8 * pb.READ_BUFFER
    assert proxy.counts()["GET"] >= text // pb.READ_BUFFER  # at most a buffer of the text column per request


def test_an_unreadable_file_is_named(shard, s3_client):
    _, storage, _, _ = shard
    s3_client.put_object(Bucket="reading", Key="in/bad.parquet", Body=b"not parquet at all")
    with pytest.raises(RuntimeError, match="cannot read input file s3://reading/in/bad.parquet"):
        list(pb.file_batches(storage, "s3://reading/in/bad.parquet", ["id"], READ_BATCH))
