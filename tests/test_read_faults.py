"""Reading damaged and unreachable WARCs: nothing after a bad record is lost, nothing cut is emitted,
a dropped connection resumes where it stopped, and what cannot be read fails loudly."""

from __future__ import annotations

import gzip
import os
from collections import Counter

import pyarrow as pa
import pytest

from operators.io.ranged import InputChanged, ReadFailed
from operators.io.records import NotAWarc
from operators.io.storage import Storage
from operators.io.warc import document_id, read_warc
from tests.faults import DroppingProxy, members, rewrite_member, shift_length

PAGES = 314  # response records in real-pages-dev.warc.gz: warcinfo, then request/response pairs
BAD = 103  # the 104th response


@pytest.fixture(scope="module")
def real(shared_data) -> bytes:
    return (shared_data / "real-pages-dev.warc.gz").read_bytes()


def read(path, storage: Storage | None = None, uri: str | None = None):
    storage, uri = storage or Storage(), uri or str(path)
    counts, problems = Counter(), []
    reader = storage.reader(uri, storage.stat(uri))
    batches = list(read_warc(reader, uri, "shard", "unknown", 4_000_000, 64, counts, problems))
    return (pa.concat_tables(batches) if batches else None), counts, problems


def write(tmp_path, data: bytes, name: str = "x.warc.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def response_span(data: bytes, k: int) -> tuple[int, int]:
    return members(data)[2 + 2 * k]  # member 0 is warcinfo; then request, response per page


@pytest.mark.parametrize("damage", ["flipped_byte", "length_short", "length_long"])
def test_one_bad_record_costs_that_record_only(tmp_path, real, damage):
    span = response_span(real, BAD)
    if damage == "flipped_byte":
        data = bytearray(real)
        data[(span[0] + span[1]) // 2] ^= 0xFF
        data = bytes(data)
    else:
        data = rewrite_member(real, span, lambda r: shift_length(r, -100 if damage == "length_short" else 100))
    table, counts, problems = read(write(tmp_path, data))
    assert counts == {"read.response": PAGES - 1, "read.corrupt_record": 1}
    assert [p["offset"] for p in problems] == [span[0]]
    assert span[0] not in table.column("source_offset").to_pylist()
    whole, _, _ = read(write(tmp_path, real, "whole.warc.gz"))
    assert table.column("url").to_pylist() == [u for i, u in enumerate(whole.column("url").to_pylist()) if i != BAD]


def test_a_cut_gzip_file_never_emits_the_cut_record(tmp_path, real):
    cut = 4_500_000
    table, counts, problems = read(write(tmp_path, real[:cut]))
    whole_members = [s for s in members(real)[2::2] if s[1] <= cut]
    assert counts == {"read.response": len(whole_members), "read.truncated": 1}
    assert table.column("source_offset").to_pylist() == [s[0] for s in whole_members]
    cut_member = next(s for s in members(real) if s[1] > cut)
    assert problems == [{"offset": cut_member[0], "reason": "truncated", "detail": "the input ends inside this record"}]


def test_uncompressed_and_whole_file_gzip_warcs(tmp_path, real):
    plain = gzip.decompress(real)
    table, counts, _ = read(write(tmp_path, plain, "plain.warc"))
    assert counts == {"read.response": PAGES}
    offsets = table.column("source_offset").to_pylist()
    assert all(plain[o:o + 7] == b"WARC/1." for o in offsets)
    cut = offsets[200] + 1000
    table, counts, problems = read(write(tmp_path, plain[:cut], "cut.warc"))
    assert counts == {"read.response": 200, "read.truncated": 1} and problems[0]["offset"] == offsets[200]
    table, counts, _ = read(write(tmp_path, gzip.compress(plain), "whole.warc.gz"))
    assert counts == {"read.response": PAGES}
    assert len(set(table.column("id").to_pylist())) == PAGES  # one member, distinct ids still


@pytest.mark.parametrize("content", [os.urandom(50_000), gzip.compress(os.urandom(50_000)),
                                     gzip.compress(b"<html><body><p>Hello</p></body></html>" * 500), b""],
                         ids=["random", "gzip_of_junk", "gzipped_html", "empty"])
def test_a_file_that_is_not_a_warc_fails_naming_it(tmp_path, content):
    path = write(tmp_path, content, "named.warc.gz")
    with pytest.raises(NotAWarc, match="named.warc.gz: not a WARC/WET file"):
        read(path)


def test_ids_are_unique_even_when_record_ids_repeat(tmp_path, real):
    first = members(real)[2 + 2 * 5]
    twice = real + real[first[0]:first[1]]  # the same response record again at the end
    table, counts, _ = read(write(tmp_path, twice))
    assert counts == {"read.response": PAGES + 1, "read.duplicate_record_id": 1}
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == PAGES + 1
    assert ids[-1] == document_id("shard", len(real), 0)
    assert table.column("warc_record_id")[-1] == table.column("warc_record_id")[5]


@pytest.fixture
def bucket(s3_client, real):
    name = "faults"
    if name not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
        s3_client.create_bucket(Bucket=name)
    s3_client.put_object(Bucket=name, Key="real.warc.gz", Body=real)
    return f"s3://{name}/real.warc.gz"


def test_a_dropped_connection_resumes_at_the_last_good_byte(tmp_path, s3_server, bucket, real):
    proxy = DroppingProxy(s3_server, cut_at=4_500_000)
    storage = Storage(endpoint_url=proxy.url, retry_backoff_s=0.05)
    try:
        table, counts, problems = read(None, storage, bucket)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    local, _, _ = read(write(tmp_path, real))
    assert counts == {"read.response": PAGES} and problems == []
    assert table.equals(local.set_column(local.schema.get_field_index("source"), "source",
                                         pa.array([bucket] * PAGES)))


def test_an_outage_that_does_not_end_fails_the_read(s3_server, bucket):
    proxy = DroppingProxy(s3_server, cut_at=4_500_000, down_after=True)
    storage = Storage(endpoint_url=proxy.url, retries=2, retry_backoff_s=0.05)
    try:
        with pytest.raises(ReadFailed, match=r"real.warc.gz: read failed at byte \d+ after 2 retries"):
            read(None, storage, bucket)
    finally:
        proxy.close()


def test_an_object_replaced_mid_read_fails_the_read(s3_server, s3_client, bucket, real):
    s3_client.put_object(Bucket="faults", Key="real.warc.gz", Body=real * 4)  # more than socket buffers hold
    proxy = DroppingProxy(s3_server, cut_at=len(real) * 8)
    storage = Storage(endpoint_url=proxy.url, retry_backoff_s=0.05)
    reader = storage.reader(bucket, storage.stat(bucket))
    try:
        assert len(reader.read(1_000_000)) > 0
        s3_client.put_object(Bucket="faults", Key="real.warc.gz", Body=real[:-10])
        proxy.drop_all()
        with pytest.raises(InputChanged, match="changed while it was being read"):
            while reader.read(1 << 20):
                pass
    finally:
        reader.close()
        proxy.close()
