"""A whole crawl's control plane: a re-run's ledger check costs listings, not a request per shard.

Requests are counted by a proxy in front of the real local S3 server (moto over HTTP); 200 shards fill one
listing page, so a request per shard would show as 200.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.curate.shard_plan import plan_units
from operators.io.layout import shard_key
from operators.io.ledger import pending, to_do
from operators.io.listing import resolve_inputs, shard_names
from operators.io.storage import Storage
from tests.conftest import html_page, write_warc
from tests.faults import CountingProxy

SHARDS = 200
NONE = {"GET": 0, "PUT": 0, "HEAD": 0, "LIST": 0, "POST": 0, "DELETE": 0}


@pytest.fixture
def proxy(s3_server):
    counting = CountingProxy(s3_server)
    yield counting
    counting.close()


def parquet_bytes() -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": ["a"], "text": ["a document"]}), out)
    return out.getvalue()


def finished(s3_client, bucket: str, inputs: dict[str, str], ledger: str, body: bytes) -> None:
    """Upload ``inputs`` (name: key), then, a second later, a ledger entry under ``ledger`` (a key) for each,
    naming the input's size and ETag as a job's entry does."""
    s3_client.create_bucket(Bucket=bucket)
    etags = {name: s3_client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"] for name, key in inputs.items()}
    time.sleep(1.1)  # entries are written in a later second than their inputs, as a job's first run writes them
    for name, etag in etags.items():
        entry = {"input": {"size": len(body), "etag": etag}, "outputs": {}}
        s3_client.put_object(Bucket=bucket, Key=f"{ledger}/{name}.json", Body=json.dumps(entry).encode())


def test_a_quality_or_decontamination_rerun_checks_200_shards_with_three_listings(s3_server, s3_client, proxy):
    keys = {f"CC-MAIN-2024-22/s{i:03d}": f"in/CC-MAIN-2024-22/s{i:03d}.parquet" for i in range(SHARDS)}
    finished(s3_client, "cp-quality", keys, "out/_ledger", parquet_bytes())
    storage = Storage(endpoint_url=proxy.url)
    paths = {shard_key(p): p for p in storage.walk("s3://cp-quality/in", ".parquet")}  # as classify/shards.plan
    proxy.reset()

    todo, _ = pending(storage, paths, "s3://cp-quality/out", logging.getLogger("test"))

    assert todo == []
    # the ledger folder's walk, then one listing of entries' times and one of the inputs' times
    assert proxy.counts() == {**NONE, "LIST": 3}

    s3_client.put_object(Bucket="cp-quality", Key=keys["CC-MAIN-2024-22/s007"], Body=parquet_bytes() + b" ")
    proxy.reset()
    todo, _ = pending(storage, paths, "s3://cp-quality/out", logging.getLogger("test"))

    assert todo == ["CC-MAIN-2024-22/s007"]
    # only the rewritten input's entry is read, its input asked for, and the entry removed
    assert proxy.counts() == {**NONE, "LIST": 3, "GET": 1, "HEAD": 1, "DELETE": 1}


def test_a_curation_rerun_plans_200_finished_shards_with_four_listings(tmp_path, s3_server, s3_client, proxy):
    warc = write_warc(tmp_path / "w.warc.gz", [{"url": "https://a.example.org/", "body": html_page("A", ["a"])}])
    keys = {f"s{i:03d}.warc": f"in/s{i:03d}.warc.gz" for i in range(SHARDS)}
    finished(s3_client, "cp-curate", keys, "out/_ledger", warc.read_bytes())
    storage = Storage(endpoint_url=proxy.url)
    proxy.reset()

    # as jobs/curate/job.py plans: the input's listing, the ledger's, the units, the ledger check
    names = shard_names(resolve_inputs(storage, ["s3://cp-curate/in/*.warc.gz"], None, "warc", None, None))
    recorded = {n.removesuffix(".json") for n in storage.listdir("s3://cp-curate/out/_ledger")}
    units = plan_units(storage, names, recorded, lambda: 2, None)
    todo, changed = to_do(storage, {u: uri for u, (uri, _, _) in units.items()},
                          lambda u: f"s3://cp-curate/out/_ledger/{u}.json", recorded)

    assert (len(units), todo, changed) == (SHARDS, [], [])
    # input glob, ledger folder, entries' times, inputs' times
    assert proxy.counts() == {**NONE, "LIST": 4}


def test_a_rerun_into_a_relative_local_folder_finds_its_finished_shards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shard = tmp_path / "in" / "CC-MAIN-2024-22" / "s.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(parquet_bytes())
    time.sleep(1.1)
    entry = tmp_path / "out" / "_ledger" / "CC-MAIN-2024-22" / "s.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(json.dumps({"input": Storage().stat(str(shard)), "outputs": {}}))

    todo, ledger = pending(Storage(), {"CC-MAIN-2024-22/s": "in/CC-MAIN-2024-22/s.parquet"}, "out", logging.getLogger())

    assert (todo, ledger) == ([], "out/_ledger")
