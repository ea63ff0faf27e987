"""A shard read as byte-range parts: every record exactly once, whatever the boundaries; the job's
output is the same split or whole; a re-run keeps the split its ledger names."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from jobs.curate import run
from jobs.curate.recipe import load_recipe
from jobs.curate.shard_plan import plan_units
from operators.io.shard import part_range
from operators.io.storage import Storage
from operators.io.warc import leading_crawl, read_warc
from tests.conftest import ROOT
from tests.faults import members

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")


def read_range(path, start: int = 0, end: int | None = None):
    storage, uri = Storage(), str(path)
    counts, problems = Counter(), []
    reader = storage.reader(uri, storage.stat(uri), start)
    batches = list(read_warc(reader, uri, "shard", "unknown", 4_000_000, 64, counts, problems, start, end))
    rows = pa.concat_tables(batches).to_pylist() if batches else []
    return rows, counts


def read_parts(path, bounds: list[int]):
    """Rows and summed counts of the ranges between consecutive ``bounds`` (the last one open)."""
    rows, counts = [], Counter()
    for start, end in zip(bounds, [*bounds[1:], None], strict=True):
        part_rows, part_counts = read_range(path, start, end)
        rows += part_rows
        counts += part_counts
    return rows, counts


@pytest.fixture(scope="module")
def real(shared_data) -> bytes:
    return (shared_data / "real-pages-dev.warc.gz").read_bytes()


@pytest.mark.parametrize("n", [2, 5, 13])
def test_parts_read_every_record_once(tmp_path, real, n):
    path = tmp_path / "x.warc.gz"
    path.write_bytes(real)
    whole, counts = read_range(path)
    rows, part_counts = read_parts(path, [part_range(len(real), (k, n))[0] for k in range(n)])
    assert [r["id"] for r in rows] == [r["id"] for r in whole] and len(whole) == 314
    assert part_counts == counts
    first = Storage().reader(str(path), Storage().stat(str(path)))
    assert leading_crawl(first, str(path)) == whole[-1]["crawl"] == "baseline-heldout-real-pages"
    first.close()


def test_boundaries_inside_and_at_members_and_a_damaged_one(tmp_path, real):
    spans = members(real)
    bad = spans[21]
    data = bytearray(real)
    data[(bad[0] + bad[1]) // 2] ^= 0xFF  # a damaged response member, a boundary inside it
    path = tmp_path / "x.warc.gz"
    path.write_bytes(bytes(data))
    whole, counts = read_range(path)
    assert counts["read.corrupt_record"] == 1
    bounds = [0, bad[0] + 10, spans[40][0], spans[41][0] + 1, spans[41][1] - 1]  # inside, at, just after starts
    rows, part_counts = read_parts(path, bounds)
    assert [r["id"] for r in rows] == [r["id"] for r in whole]
    assert part_counts == counts


def test_one_member_file_is_read_whole_by_its_first_part(tmp_path, real):
    path = tmp_path / "one.warc.gz"
    path.write_bytes(gzip.compress(b"".join(gzip.decompress(real[a:b]) for a, b in members(real))))
    whole, _ = read_range(path)
    first, _ = read_range(path, 0, path.stat().st_size // 3)
    rest, counts = read_range(path, path.stat().st_size // 3)
    assert [r["id"] for r in first] == [r["id"] for r in whole] and len(whole) == 314
    assert rest == [] and not counts


def test_plan_splits_only_few_shards_and_keeps_a_recorded_split(tmp_path):
    many = {f"s{i}.warc.gz": f"{tmp_path}/missing-{i}.warc.gz" for i in range(8)}
    units = plan_units(Storage(), many, set(), lambda: 2, None)  # 4 per worker: no stat (the files do not exist)
    assert list(units) == list(many)
    files = {}
    for name, size in (("a.warc.gz", 40_000_000), ("b.warc.gz", 8_000_000), ("c.warc", 40_000_000)):
        (tmp_path / name).write_bytes(b"\0" * size)
        files[name] = str(tmp_path / name)
    units = plan_units(Storage(), files, set(), lambda: 2, None)  # parts of max(16 MB, 88 MB / 8)
    assert [(shard, part) for _, shard, part in units.values()] == [
        ("a.warc.gz", (0, 3)), ("a.warc.gz", (1, 3)), ("a.warc.gz", (2, 3)), ("b.warc.gz", (0, 1)),
        ("c.warc", (0, 1))]
    assert "a.warc.gz.part1-of3" in units
    recorded = {"a.warc.gz.part0-of2"}
    assert [p for _, s, p in plan_units(Storage(), files, recorded, lambda: 2, 1.0).values() if s == "a.warc.gz"] == [
        (0, 2), (1, 2)]
    with pytest.raises(ValueError, match="a.warc.gz has ledger entries of two splits"):
        plan_units(Storage(), files, recorded | {"a.warc.gz.part2-of3"}, lambda: 2, None)


@pytest.mark.slow
def test_split_job_writes_what_the_whole_shard_does_and_resumes(tmp_path, ray_local, shared_data):
    shutil.copy(shared_data / "real-pages-dev.warc.gz", tmp_path / "pages.warc.gz")

    def job(out: str, part_mb: float):
        return run(load_recipe(RECIPE, [f"input.paths={tmp_path}/pages.warc.gz", f"output.root={tmp_path}/{out}",
                                        f"input.part_mb={part_mb}"]))

    def rows(out: str) -> dict[str, list]:
        return {side: sorted(pads.dataset(f"{tmp_path}/{out}/fineweb/{side}", format="parquet").to_table()
                             .select(["id", "url", "filter_reason"]).to_pylist(), key=lambda r: r["id"])
                for side in ("filter", "rejected")}

    whole, split = job("whole", 100), job("split", 1)
    assert (whole["shards"], whole["parts"], split["shards"], split["parts"]) == (1, 1, 1, 9)
    assert rows("split") == rows("whole") and len(rows("whole")["filter"]) + len(rows("whole")["rejected"]) == 314
    assert split["read"] == whole["read"] and split["rows"] == whole["rows"]
    ledger = tmp_path / "split" / "fineweb" / "filter" / "_ledger"
    kept = next((tmp_path / "split" / "fineweb" / "filter").glob("*/pages.warc.part3-of9.parquet"))
    (ledger / "pages.warc.part3-of9.json").unlink()  # killed after its output, before its ledger entry
    untouched = (ledger / "pages.warc.part4-of9.json").stat().st_mtime_ns

    again = job("split", 100)  # other settings: the recorded split still holds

    assert again["parts"] == 9 and kept.exists()
    assert rows("split") == rows("whole")
    assert (ledger / "pages.warc.part4-of9.json").stat().st_mtime_ns == untouched
