"""Score cache keyed by the exact-dedup text key: real Parquet part files on local disk and on local S3."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.dedup.exact import text_keys
from operators.io.storage import Storage, join
from operators.quality.cache import SCHEMA, cache_id, lookup, store

EDU = cache_id("edu", "nvidia/edu-v1")


@pytest.fixture
def cache(storage_root):
    return storage_root


def read_part(storage: Storage, uri: str) -> pa.Table:
    fs, path = storage.filesystem(uri)
    return pq.read_table(path, filesystem=fs)


def test_store_then_lookup_hits_and_misses(cache):
    storage, root = cache
    texts = ["The history of the town", "A recipe for bread", "Ten facts about rivers", "Menu Home Contact"]
    keys = text_keys(pa.array(texts))
    assert store(storage, root, EDU, "shard-00001", keys[:3], [0.25, 1.5, 3.0]) == 3
    # The same text up to case and whitespace has the same key, so it is a hit; null keys and new texts miss.
    asked = text_keys(pa.array(["the  HISTORY of the town", "Menu Home Contact", "A recipe for bread"]))
    found = lookup(storage, root, EDU, pa.concat_arrays([asked, pa.nulls(1, pa.string()), keys[2:3]]))
    assert found.type == pa.float32()
    assert found.to_pylist() == [0.25, None, 1.5, None, 3.0]
    for uri in storage.walk(join(root, EDU), ".parquet"):
        part = read_part(storage, uri)
        assert part.schema == SCHEMA
        assert uri.rsplit("/", 2)[-2:] == [part["key"][0].as_py()[:2], "shard-00001.parquet"]
        assert part["key"].to_pylist() == sorted(part["key"].to_pylist())


def test_two_parts_in_one_partition(cache):
    storage, root = cache
    a, b, c, d = (f"ab{i:014x}" for i in range(1, 5))
    store(storage, root, EDU, "shard-a", pa.array([b, a, None, a]), [1.0, 0.5, 9.0, 7.0])
    store(storage, root, EDU, "shard-b", pa.array([c, b]), [2.0, 0.25])
    assert storage.listdir(join(root, EDU, "ab")) == ["shard-a.parquet", "shard-b.parquet"]
    # A key repeated in a shard keeps its first score (a: 0.5); parts disagreeing on b: the smallest wins.
    assert read_part(storage, join(root, EDU, "ab", "shard-a.parquet")).to_pydict() == {
        "key": [a, b], "score": [0.5, 1.0]}
    assert lookup(storage, root, EDU, pa.array([a, b, c, d])).to_pylist() == [0.5, 0.25, 2.0, None]


def test_another_model_or_parameter_misses(cache):
    storage, root = cache
    keys = pa.array(["0123456789abcdef", "fedcba9876543210"])
    store(storage, root, EDU, "shard-a", keys, [1.0, 2.0])
    assert lookup(storage, root, EDU, keys).to_pylist() == [1.0, 2.0]
    for other in (cache_id("edu", "nvidia/edu-v2"), cache_id("edu", "nvidia/edu-v1", max_chars=4000)):
        assert lookup(storage, root, other, keys).to_pylist() == [None, None]


def test_cache_ids():
    payload = b'{"model": "nvidia/edu-v1", "params": {}}'
    assert EDU == "edu@" + hashlib.blake2b(payload, digest_size=8).hexdigest() == "edu@860579e88aa8eaf2"
    assert cache_id("edu", "m", a=1, b="x") == cache_id("edu", "m", b="x", a=1) != cache_id("edu", "m", a=2, b="x")
    with pytest.raises(ValueError, match="not a cache id"):
        lookup(Storage(), "/nowhere", "edu", pa.array(["ab01"]))
    with pytest.raises(ValueError, match="lower-case hex"):
        store(Storage(), "/nowhere", EDU, "shard-a", pa.array(["Not A Key"]), [1.0])


def test_keys_spread_over_partitions_read_only_their_partitions(cache):
    storage, root = cache
    keys = pa.array(["00aa000000000001", "7f00000000000002", "ff00000000000003", "7f00000000000004"])
    assert store(storage, root, EDU, "shard-a", keys, [0.5, 1.0, 1.5, 2.0]) == 4
    parts = storage.walk(join(root, EDU), ".parquet")
    assert [uri.rsplit("/", 2)[-2] for uri in parts] == ["00", "7f", "ff"]
    assert [read_part(storage, uri).num_rows for uri in parts] == [1, 2, 1]
    # A broken part in partition ff: lookups of keys elsewhere never open it, one of an ff key does.
    storage.write_text(join(root, EDU, "ff", "shard-b.parquet"), "not parquet")
    asked = pa.array(["7f00000000000004", "00aa000000000001", "00bb000000000000"])
    assert lookup(storage, root, EDU, asked).to_pylist() == [2.0, 0.5, None]
    with pytest.raises(pa.ArrowInvalid):
        lookup(storage, root, EDU, pa.array(["ff00000000000003"]))
