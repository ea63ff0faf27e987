"""Object storage and input listing against a real local S3 server (moto over HTTP)."""

from __future__ import annotations

import gzip

import pytest

from operators.filters.language import LanguageFilter, default_model_path
from operators.filters.url import UrlFilter
from operators.io.listing import parse_slice, resolve_inputs, shard_name, shard_names
from operators.io.storage import Storage


@pytest.fixture
def bucket(s3_client):
    s3_client.create_bucket(Bucket="data")
    for i in range(4):
        s3_client.put_object(Bucket="data", Key=f"crawl/seg/f-{i}.warc.gz", Body=b"x")
    s3_client.put_object(Bucket="data", Key="crawl/seg/f-0.warc.wet.gz", Body=b"x")
    yield "data"
    for obj in s3_client.list_objects_v2(Bucket="data").get("Contents", []):
        s3_client.delete_object(Bucket="data", Key=obj["Key"])
    s3_client.delete_bucket(Bucket="data")


def test_s3_glob_slice_and_limit(bucket, s3_server):
    storage = Storage(endpoint_url=s3_server)
    found = resolve_inputs(storage, ["s3://data/crawl/seg/*.warc.gz"], None, "warc", None, None)
    assert found == [f"s3://data/crawl/seg/f-{i}.warc.gz" for i in range(4)]
    assert resolve_inputs(storage, ["s3://data/crawl/seg/*.warc.gz"], None, "warc", "1:3", 1) == [
        "s3://data/crawl/seg/f-1.warc.gz"]
    with pytest.raises(FileNotFoundError, match="nothing matches"):
        resolve_inputs(storage, ["s3://data/none/*.gz"], None, "warc", None, None)


def test_crawl_id_resolves_through_the_paths_listing(s3_client, s3_server):
    s3_client.create_bucket(Bucket="commoncrawl")
    listing = "".join(f"crawl-data/CC-MAIN-2024-22/segments/1/warc/{n}.warc.gz\n" for n in "ab")
    s3_client.put_object(Bucket="commoncrawl", Key="crawl-data/CC-MAIN-2024-22/warc.paths.gz",
                         Body=gzip.compress(listing.encode()))
    storage = Storage(endpoint_url=s3_server, anonymous=False)
    assert resolve_inputs(storage, [], "CC-MAIN-2024-22", "warc", "1:", None) == [
        "s3://commoncrawl/crawl-data/CC-MAIN-2024-22/segments/1/warc/b.warc.gz"]
    with pytest.raises(ValueError, match="not a crawl id"):
        resolve_inputs(storage, [], "2024-22", "warc", None, None)


def test_atomic_write_and_listdir_on_s3_and_local(bucket, s3_server, tmp_path):
    storage = Storage(endpoint_url=s3_server)
    for root in ("s3://data/out", str(tmp_path / "out")):
        storage.write_text(f"{root}/_ledger/a.json", "{}")
        storage.write_atomic(f"{root}/_ledger/b.json", lambda f: f.write(b"[1]"))
        assert storage.listdir(f"{root}/_ledger") == ["a.json", "b.json"]
        assert storage.read_bytes(f"{root}/_ledger/b.json") == b"[1]"
        assert storage.listdir(f"{root}/missing") == []
    with pytest.raises(RuntimeError):
        storage.write_atomic(str(tmp_path / "out" / "c.json"), lambda f: (_ for _ in ()).throw(RuntimeError()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_ledger"]


def test_language_model_and_blocklist_load_from_s3(bucket, s3_client, s3_server):
    with open(default_model_path(), "rb") as f:
        s3_client.put_object(Bucket="data", Key="models/lid.176.ftz", Body=f.read())
    s3_client.put_object(Bucket="data", Key="lists/domains.txt", Body=b"# adult\nbad.example\n")
    storage = Storage(endpoint_url=s3_server)
    lang = LanguageFilter(storage=storage, model="s3://data/models/lid.176.ftz")
    assert lang.model.predict(["this is an english sentence about the weather"], k=1)[0][0] == ["__label__en"]
    url = UrlFilter(storage=storage, blocklists=["s3://data/lists/domains.txt"])
    assert url.domains == frozenset({"bad.example"})


def test_shard_names_keep_warc_and_wet_apart_and_refuse_collisions():
    assert shard_name("s3://b/x/CC-MAIN-1-00001.warc.gz") == "CC-MAIN-1-00001.warc"
    assert shard_name("/d/CC-MAIN-1-00001.warc.wet.gz") == "CC-MAIN-1-00001.warc.wet"
    with pytest.raises(ValueError, match="share the shard name"):
        shard_names(["/a/x.warc.gz", "/b/x.warc.gz"])
    assert parse_slice("2:") == slice(2, None) and parse_slice(None) == slice(None)
