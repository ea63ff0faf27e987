"""Global dedup on real local Spark: exact values on small sets, planted near-duplicates, determinism."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.dedup import DedupRecipe, run
from jobs.dedup.job import SPARK_LOG4J
from operators.dedup.minhash import jaccard, shingle_sets
from operators.dedup.spark_dedup import READ_BATCH
from operators.schema import conform, output_schema
from tests.conftest import ENGLISH, GERMAN, ROOT
from tests.waiting import GENEROUS_S

RECIPE = str(ROOT / "jobs" / "recipes" / "dedup.yaml")
SCHEMA = output_schema({"gopher_word_count": pa.int64()})
DEDUPED = SCHEMA.append(pa.field("minhash_cluster_size", pa.int64()))
CRAWL = "CC-MAIN-2024-22"


def write_run(folder: Path, shards: dict[str, list[dict]], crawl: str = CRAWL) -> Path:
    """Write documents like the curation job does: ``<folder>/<crawl>/<shard>.parquet``."""
    for name, rows in shards.items():
        path = folder / crawl / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows), SCHEMA), path)
    return folder


def recipe(tmp_path: Path, src: Path, *overrides: str) -> DedupRecipe:
    return load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={tmp_path / 'dedup'}", *overrides])


def removals(out: Path) -> list[dict]:
    """The duplicates table's rows, in order."""
    return pads.dataset(str(out / "_duplicates"), format="parquet").to_table().to_pylist()


def duplicates(out: Path) -> dict[str, tuple]:
    return {r["id"]: (r["cluster_id"], r["kept_id"], r["method"]) for r in removals(out)}


def kept_ids(out: Path) -> list[str]:
    files = [p for p in out.rglob("*.parquet") if "_duplicates" not in p.parts]
    return sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist())


def edit(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, round(len(words) * fraction))):
        words[i] = f"zq{rng.randrange(10**6)}"
    return " ".join(words)


def test_exact_and_fuzzy_on_a_small_set(tmp_path, spark):
    base = " ".join(ENGLISH)
    src = write_run(tmp_path / "filter", {
        "s0": [dict(id="a", text=base, url="https://x.example/1", date="2024-05-01T00:00:00Z", source_offset=10),
               dict(id="b", text="  " + base.upper().replace(" ", " \n "), url="https://x.example/2",
                    date="2023-01-01T00:00:00Z", source_offset=20),
               dict(id="c", text=base.replace("twelfth", "thirteenth"), url="https://x.example/3",
                    date="2024-06-01T00:00:00Z", source_offset=30)],
        "s1": [dict(id="d", text=" ".join(GERMAN), url="https://y.example/", date="2024-01-01T00:00:00Z"),
               dict(id="e", text="A short text.", url="https://z.example/", date="2024-01-01T00:00:00Z")],
        "s2": [dict(id="f", text=base, url="https://x.example/1", date="2025-01-01T00:00:00Z")],
    })
    stats = run(recipe(tmp_path, src), spark)
    out = tmp_path / "dedup"
    b = f"{CRAWL}/s0#1"  # the cluster is named by its kept row: b, row 1 of s0
    assert duplicates(out) == {"a": (b, "b", "exact"), "f": (b, "b", "exact"), "c": (b, "b", "fuzzy")}
    assert kept_ids(out) == ["b", "d", "e"]
    assert sorted(p.name for p in (out / CRAWL).iterdir()) == ["s0.parquet", "s1.parquet", "s2.parquet"]
    assert pq.read_table(out / CRAWL / "s2.parquet").num_rows == 0
    assert pq.read_table(out / CRAWL / "s0.parquet").schema.equals(DEDUPED, check_metadata=False)
    sizes = {r["id"]: r["minhash_cluster_size"] for f in ("s0", "s1")
             for r in pq.read_table(out / CRAWL / f"{f}.parquet").to_pylist()}
    assert sizes == {"b": 4, "d": 1, "e": 1}  # b stands for a and f (exact) and c (fuzzy)
    assert stats | {"seconds": 0, "config": 0} == {
        "input": 6, "kept": 3, "removed": 3, "empty_text": 0, "url_duplicates": 0, "exact_duplicates": 2,
        "fuzzy_duplicates": 1, "clusters": {"exact": 1, "fuzzy": 1}, "largest_cluster": 3, "shards": 3,
        "quarantined": [], "seconds": 0, "config": 0}
    assert json.loads((out / "_stats.json").read_text())["removed"] == 3


def test_rows_past_the_first_read_batch_keep_their_row_in_the_file(tmp_path, spark):
    """A file is read a batch at a time (``READ_BATCH`` rows): a duplicate pair far into it is named by the
    kept row's place in the file, and every other row is kept in order."""
    rows = [dict(id=f"r{i:05d}", text=f"document {i} says {i * 7919} things", url=f"https://x.example/{i}",
                 date="2024-01-01T00:00:00Z") for i in range(READ_BATCH * 2 + 500)]
    rows[-1]["text"] = rows[READ_BATCH + 300]["text"]
    src = write_run(tmp_path / "filter", {"s0": rows})
    stats = run(recipe(tmp_path, src), spark)
    out = tmp_path / "dedup"
    kept = rows[READ_BATCH + 300]["id"]
    assert duplicates(out) == {rows[-1]["id"]: (f"{CRAWL}/s0#{READ_BATCH + 300}", kept, "exact")}
    assert pq.read_table(out / CRAWL / "s0.parquet").column("id").to_pylist() == [r["id"] for r in rows[:-1]]
    assert (stats["input"], stats["kept"]) == (len(rows), len(rows) - 1)


def test_url_dedup_keeps_the_latest_capture(tmp_path, spark):
    src = write_run(tmp_path / "filter", {"s0": [
        dict(id="old", text="first version of the page", url="https://x.example/", date="2023-01-01T00:00:00Z"),
        dict(id="new", text="second version, rewritten", url="https://x.example/", date="2024-01-01T00:00:00Z"),
        dict(id="other", text="another page entirely", url="https://y.example/", date="2022-01-01T00:00:00Z"),
    ]})
    stats = run(recipe(tmp_path, src, "url.enabled=true"), spark)
    assert duplicates(tmp_path / "dedup") == {"old": (f"{CRAWL}/s0#1", "new", "url")}
    assert stats["url_duplicates"] == 1 and kept_ids(tmp_path / "dedup") == ["new", "other"]


def test_chain_of_near_duplicates_is_one_cluster(tmp_path, spark):
    a = " ".join(ENGLISH).split()
    b = a[:]
    b[10], b[70], b[130] = "alpha", "beta", "gamma"
    c = b[:]
    c[40], c[100], c[160] = "delta", "epsilon", "zeta"
    texts = {"a": " ".join(a), "b": " ".join(b), "c": " ".join(c)}
    sets = {k: shingle_sets(pa.array([v]), 5)[0] for k, v in texts.items()}
    assert jaccard(sets["a"], sets["b"]) >= 0.8 and jaccard(sets["b"], sets["c"]) >= 0.8
    assert jaccard(sets["a"], sets["c"]) < 0.8  # only the chain joins a and c
    src = write_run(tmp_path / "filter", {"s": [dict(id=k, text=v, date=f"2024-01-0{i + 1}") for i, (k, v)
                                                in enumerate(texts.items())]})
    run(recipe(tmp_path, src), spark)
    assert duplicates(tmp_path / "dedup") == {"b": (f"{CRAWL}/s#0", "a", "fuzzy"), "c": (f"{CRAWL}/s#0", "a", "fuzzy")}


def test_planted_near_duplicates_recall_precision_and_determinism(tmp_path, spark, real_texts):
    rng = random.Random(7)
    originals = [t for t in real_texts if len(t.split()) >= 100]
    rows, family, truth = [], {}, {}
    for i, text in enumerate(originals):
        rows.append(dict(id=f"d{i:04d}-orig", text=text, date="2024-01-01T00:00:00Z"))
        family[f"d{i:04d}-orig"] = i
        original_set = shingle_sets(pa.array([text]), 5)[0]
        for fraction in (0.005, 0.01, 0.02, 0.05, 0.2):
            copy = edit(text, fraction, rng)
            doc_id = f"d{i:04d}-{fraction}"
            rows.append(dict(id=doc_id, text=copy, date="2024-02-01T00:00:00Z"))
            family[doc_id] = i
            truth[doc_id] = jaccard(original_set, shingle_sets(pa.array([copy]), 5)[0])
    shards = {f"s{k}": rows[k::3] for k in range(3)}
    src = write_run(tmp_path / "filter", shards)
    first = run(recipe(tmp_path, src), spark)
    dups = duplicates(tmp_path / "dedup")
    kept_first = kept_ids(tmp_path / "dedup")

    cluster_of = {kept: cluster for cluster, kept, _ in dups.values()} | {d: c for d, (c, _, _) in dups.items()}

    def together(doc_id: str) -> bool:
        original = f"{doc_id.split('-')[0]}-orig"
        return doc_id in cluster_of and cluster_of[doc_id] == cluster_of.get(original)

    similar = [d for d, j in truth.items() if j >= 0.8]
    recall = sum(together(d) for d in similar) / len(similar)
    precision = sum(family[d] == family[kept] for d, (_, kept, _) in dups.items()) / len(dups)
    dissimilar = [d for d, j in truth.items() if j < 0.5]
    print(f"\nplanted: {len(similar)} pairs at Jaccard >= 0.8, recall {recall:.4f}, precision {precision:.4f}; "
          f"{sum(together(d) for d in dissimilar)} of {len(dissimilar)} pairs under 0.5 merged")
    assert recall >= 0.95 and precision >= 0.99
    assert first["input"] == len(rows) and first["kept"] + first["removed"] == len(rows)

    run(recipe(tmp_path, src), spark)  # same input and config: identical result
    assert duplicates(tmp_path / "dedup") == dups and kept_ids(tmp_path / "dedup") == kept_first


def test_dedup_reads_and_writes_s3(tmp_path, spark, s3_server, s3_client):
    s3_client.create_bucket(Bucket="dedup")
    base = " ".join(ENGLISH)
    local = write_run(tmp_path / "filter", {"s0": [dict(id="a", text=base, date="2024"),
                                                   dict(id="b", text=base, date="2023")]})
    for f in local.rglob("*.parquet"):
        s3_client.upload_file(str(f), "dedup", f"run/filter/{f.relative_to(local)}")
    r = load_model(DedupRecipe, RECIPE, ["input=s3://dedup/run/filter", "output=s3://dedup/run/dedup",
                                         f"storage.endpoint_url={s3_server}"])
    assert run(r, spark)["removed"] == 1
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket="dedup", Prefix="run/dedup/")["Contents"])
    assert len(keys) == 3 and keys[0] == "run/dedup/CC-MAIN-2024-22/s0.parquet" and keys[2] == "run/dedup/_stats.json"
    assert keys[1].startswith("run/dedup/_duplicates/part-")


def test_driver_java_options_of_a_recipe_come_after_the_jobs_log_configuration(spark):
    """The session fixture sets -XX:TieredStopAtLevel=1 through its conf; the job's log4j file stays (after
    the options Spark itself puts first)."""
    assert spark.sparkContext.getConf().get("spark.driver.extraJavaOptions").endswith(
        f" -Dlog4j.configurationFile={SPARK_LOG4J} -XX:TieredStopAtLevel=1")


def test_cli_names_a_bad_key():
    done = subprocess.run([sys.executable, "-m", "jobs.dedup", "--config", RECIPE, "--set", "minhash.bnads=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 2 and "minhash.bnads" in done.stderr


def test_a_copied_shard_and_repeated_ids_keep_one_copy_of_each_text(tmp_path, spark):
    texts = ["the same page twice in one shard, under one id", "a page whose id the next page reuses",
             "an unrelated page that carries a repeated id", " ".join(GERMAN)]
    rows = [dict(id=i, text=texts[t], date="2024") for i, t in (("x", 0), ("x", 0), ("y", 1), ("y", 2), ("z", 3))]
    src = write_run(tmp_path / "filter", {"s0": rows, "s1": rows})  # one shard under two names
    stats = run(recipe(tmp_path, src), spark)
    out = tmp_path / "dedup"
    assert pq.read_table(out / CRAWL / "s0.parquet").column("text").to_pylist() == texts
    assert pq.read_table(out / CRAWL / "s1.parquet").num_rows == 0
    s0, s1 = f"{CRAWL}/s0", f"{CRAWL}/s1"
    assert [tuple(r.values()) for r in removals(out)] == [
        ("x", s0, f"{s0}#0", "x", s0, "exact"), ("x", s1, f"{s0}#0", "x", s0, "exact"),
        ("x", s1, f"{s0}#0", "x", s0, "exact"), ("y", s1, f"{s0}#2", "y", s0, "exact"),
        ("y", s1, f"{s0}#3", "y", s0, "exact"), ("z", s1, f"{s0}#4", "z", s0, "exact")]
    assert list(removals(out)[0]) == ["id", "shard", "cluster_id", "kept_id", "kept_shard", "method"]
    assert stats | {"seconds": 0, "config": 0} == {
        "input": 10, "kept": 4, "removed": 6, "empty_text": 0, "url_duplicates": 0, "exact_duplicates": 6,
        "fuzzy_duplicates": 0, "clusters": {"exact": 4}, "largest_cluster": 4, "shards": 2, "quarantined": [],
        "seconds": 0, "config": 0}
    assert json.loads((out / "_stats.json").read_text()) == stats


def test_blank_texts_pass_through_and_a_shard_without_text_is_refused(tmp_path, spark):
    base = " ".join(ENGLISH)
    src = write_run(tmp_path / "filter", {"s0": [
        dict(id="null", text=None, date="2023"), dict(id="empty", text="", date="2023"),
        dict(id="space", text=" \n\t\u00a0", date="2023"), dict(id="bang", text="!!!", date="2024"),
        dict(id="ask", text="???", date="2024"), dict(id="a", text=base, date="2024"),
        dict(id="b", text=base, date="2025")]})
    content = src / CRAWL / "s1.parquet"
    pq.write_table(pa.table({"id": [f"c{i}" for i in range(3)], "content": [base] * 3}), content)
    with pytest.raises(RuntimeError, match=re.escape(f"{content} (missing column text)")):
        run(recipe(tmp_path, src), spark)
    out = tmp_path / "dedup"
    stats = json.loads((out / "_stats.json").read_text())
    assert {k: stats[k] for k in ("input", "kept", "removed", "empty_text", "exact_duplicates", "quarantined")} == {
        "input": 7, "kept": 6, "removed": 1, "empty_text": 3, "exact_duplicates": 1,
        "quarantined": [{"file": str(content), "reason": "missing column text"}]}
    assert duplicates(out) == {"b": (f"{CRAWL}/s0#5", "a", "exact")}
    assert kept_ids(out) == ["a", "ask", "bang", "empty", "null", "space"]
    assert sorted(p.name for p in (out / CRAWL).iterdir()) == ["s0.parquet"]


def test_unreadable_files_are_quarantined_by_name(tmp_path, spark):
    base = " ".join(ENGLISH)
    src = write_run(tmp_path / "filter", {"s0": [dict(id="a", text=base, date="2024"),
                                                 dict(id="b", text=base, date="2023")],
                                          "s1": [dict(id="c", text=" ".join(GERMAN), date="2024")]})
    folder = src / CRAWL
    good = (folder / "s1.parquet").read_bytes()
    footer = int.from_bytes(good[-8:-4], "little")
    bad = {"a-empty": b"", "b-csv": b"id,text\n1,not parquet\n",  # a-empty sorts first
           "c-footer": good[:-8 - footer] + b"\xff" * footer + good[-8:]}
    for name, data in bad.items():
        (folder / f"{name}.parquet").write_bytes(data)
    with pytest.raises(RuntimeError, match="3 unusable file") as err:
        run(recipe(tmp_path, src), spark)
    assert all(f"{folder / name}.parquet (unreadable: " in str(err.value) for name in bad)
    out = tmp_path / "dedup"
    stats = json.loads((out / "_stats.json").read_text())
    assert [q["file"] for q in stats["quarantined"]] == [str(folder / f"{name}.parquet") for name in bad]
    assert [q["reason"] for q in stats["quarantined"]][:2] == [
        "unreadable: Parquet file size is 0 bytes",
        "unreadable: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a "
        "parquet file."]
    assert (stats["input"], stats["kept"], stats["removed"], stats["shards"]) == (3, 2, 1, 2)
    assert kept_ids(out) == ["b", "c"]
    assert sorted(p.name for p in (out / CRAWL).iterdir()) == ["s0.parquet", "s1.parquet"]
    assert pq.read_table(out / CRAWL / "s0.parquet").schema.equals(DEDUPED, check_metadata=False)

    for name in bad:
        (folder / f"{name}.parquet").unlink()
    page = bytearray(good)
    page[4:40] = b"\xff" * 36  # the first page header: the footer still reads
    (folder / "d-page.parquet").write_bytes(bytes(page))
    with pytest.raises(Exception, match=re.escape(f"cannot read input file {folder / 'd-page.parquet'}")):
        run(recipe(tmp_path, src), spark)


def test_a_rerun_leaves_only_what_its_stats_count(tmp_path, spark):
    base = " ".join(ENGLISH)
    src = write_run(tmp_path / "filter", {"s0": [dict(id="a", text=base, date="2023"),
                                                 dict(id="b", text=" ".join(GERMAN), date="2024")],
                                          "s1": [dict(id="c", text=base, date="2024"),
                                                 dict(id="d", text="A short text.", date="2024")]})
    out = tmp_path / "dedup"
    assert run(recipe(tmp_path, src), spark)["kept"] == 3 and kept_ids(out) == ["a", "b", "d"]
    (src / CRAWL / "s1.parquet").unlink()
    (out / CRAWL / "s1.parquet.tmp-0123").write_bytes(b"")  # a dead run's staging file
    stats = run(recipe(tmp_path, src), spark)
    assert (stats["input"], stats["kept"], stats["removed"]) == (2, 2, 0)
    assert sorted(p.name for p in (out / CRAWL).iterdir()) == ["s0.parquet"]
    assert kept_ids(out) == ["a", "b"]
    with pytest.raises(ValueError, match="^output: "):
        run(recipe(tmp_path, src, f"output={src / 'dedup'}"), spark)
    with pytest.raises(ValueError, match="^output: "):
        run(recipe(tmp_path, out / CRAWL), spark)


def test_spark_standalone_on_ray_gives_the_local_result(tmp_path, spark, real_texts):
    """spark.master=ray (the cluster path: a Spark master and a worker per Ray node) dedups as local[*] does."""
    rng = random.Random(3)
    rows = []
    for i, text in enumerate(t for t in real_texts[:40] if len(t.split()) >= 100):
        rows += [dict(id=f"d{i:03d}", text=text), dict(id=f"d{i:03d}-near", text=edit(text, 0.01, rng)),
                 dict(id=f"d{i:03d}-copy", text=text)]
    src = write_run(tmp_path / "filter", {f"s{k}": rows[k::2] for k in range(2)})
    local = run(recipe(tmp_path / "local", src), spark)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "jobs.dedup", "--config", RECIPE, "--set", f"input={src}",
                           "--set", f"output={tmp_path / 'ray' / 'dedup'}", "--set", "spark.master=ray",
                           "--set", "ray.num_cpus=2", "--set", "spark.driver_memory=2g",
                           "--set", "spark.shuffle_partitions=4"],  # as the local session it is compared with
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dedup: Spark standalone on Ray at spark://" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert local["removed"] >= len(rows) // 3 and summary["removed"] == local["removed"]
    assert duplicates(tmp_path / "ray" / "dedup") == duplicates(tmp_path / "local" / "dedup")
    assert kept_ids(tmp_path / "ray" / "dedup") == kept_ids(tmp_path / "local" / "dedup")
