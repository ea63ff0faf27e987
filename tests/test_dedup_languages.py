"""Per-language MinHash dedup and rehydration in the dedup job, on real local Spark: exact values on small sets."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from jobs.common.recipe import load_model
from jobs.dedup import DedupRecipe, run
from operators.schema import conform, output_schema
from tests.conftest import ENGLISH, GERMAN, ROOT

RECIPE = str(ROOT / "jobs" / "recipes" / "dedup-fineweb2.yaml")
SCHEMA = output_schema({})
CRAWL = "CC-MAIN-2024-22"
CHINESE = ("北京是中华人民共和国的首都，也是全国的政治中心和文化中心。这座城市有三千多年的建城史，"
           "拥有故宫、天坛和长城等许多世界文化遗产。每年都有数以百万计的游客来到这里参观游览。"
           "城市的交通十分发达，地铁线路覆盖了大部分城区，公共汽车和出租车也很方便。"
           "北京的饮食文化丰富多彩，烤鸭、炸酱面和各种小吃深受国内外游客的喜爱。"
           "冬天的北京比较寒冷干燥，夏天则炎热多雨，春秋两季气候宜人，是旅游的最佳季节。")


def write_languages(folder: Path, docs: list[dict]) -> Path:
    """Documents as the curation job writes them by language: ``<folder>/<language>/<crawl>/s0.parquet``."""
    for language in {d["language"] for d in docs}:
        path = folder / language / CRAWL / "s0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"filter_reason": None, **d} for d in docs if d["language"] == language]
        pq.write_table(conform(pa.Table.from_pylist(rows), SCHEMA), path)
    return folder


def kept(out: Path) -> dict[str, dict]:
    files = [p for p in out.rglob("*.parquet") if "_duplicates" not in p.parts]
    return {r["id"]: r for f in files for r in pq.read_table(f).to_pylist()}


def removed(out: Path) -> dict[str, tuple[str, str]]:
    rows = pads.dataset(str(out / "_duplicates"), format="parquet").to_table().to_pylist()
    return {r["id"]: (r["kept_id"], r["method"]) for r in rows}


def edited(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_minhash_per_language_pairs_only_within_a_language_and_splits_chinese_into_words(tmp_path, spark):
    german = " ".join(GERMAN)
    docs = [dict(id="de1", text=german, language="deu_Latn", date="2024-01-01"),
            dict(id="de2", text=edited(german, "zwölfte", "elfte"), language="deu_Latn", date="2024-02-01"),
            dict(id="es1", text=edited(german, "Stadt", "Ciudad"), language="spa_Latn", date="2024-03-01"),
            dict(id="zh1", text=CHINESE, language="cmn_Hani", date="2024-01-01"),
            dict(id="zh2", text=edited(CHINESE, "三千", "两千"), language="cmn_Hani", date="2024-02-01")]
    src = write_languages(tmp_path / "filter", docs)
    recipe = load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={tmp_path / 'by-language'}",
                                              "rehydration.enabled=false"])
    run(recipe, spark)
    assert removed(tmp_path / "by-language") == {"de2": ("de1", "fuzzy"), "zh2": ("zh1", "fuzzy")}
    out = kept(tmp_path / "by-language")
    assert {i: r["minhash_cluster_size"] for i, r in out.items()} == {"de1": 2, "es1": 1, "zh1": 2}
    base = tmp_path / "by-language"
    assert sorted(str(p.relative_to(base)) for p in base.rglob("s0.parquet")) == [
        f"cmn_Hani/{CRAWL}/s0.parquet", f"deu_Latn/{CRAWL}/s0.parquet", f"spa_Latn/{CRAWL}/s0.parquet"]

    mixed = load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={tmp_path / 'mixed'}",
                                             "rehydration.enabled=false", "minhash.per_language=false"])
    run(mixed, spark)  # the one-language setting: the Spanish-labelled copy is paired, Chinese is one "word" run
    assert removed(tmp_path / "mixed") == {"de2": ("de1", "fuzzy"), "es1": ("de1", "fuzzy")}


def test_rehydration_repeats_from_shipped_run_and_simple_weights(tmp_path, spark):
    german, english = " ".join(GERMAN), " ".join(ENGLISH)
    docs = [dict(id=f"de{i}", text=german, language="deu_Latn", date=f"2024-01-0{i}") for i in (1, 2, 3)]
    docs += [dict(id="de4", text=GERMAN[0], language="deu_Latn", date="2024-01-01"),
             dict(id="en1", text=english, language="eng_Latn", date="2024-01-01"),
             dict(id="en2", text=english, language="eng_Latn", date="2024-01-02"),
             dict(id="en3", text=ENGLISH[0], language="eng_Latn", date="2024-01-01"),
             dict(id="en4", text=ENGLISH[1], language="eng_Latn", date="2024-01-01",
                  filter_reason="gopher_quality.stop_words")]
    src = write_languages(tmp_path / "filter", docs)
    stats = run(load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={tmp_path / 'fw2'}"]), spark)
    out = kept(tmp_path / "fw2")
    assert {i: (r["minhash_cluster_size"], r["rehydration_repeats"]) for i, r in out.items()} == {
        "de1": (3, 2),  # FineWeb2's shipped deu_Latn weights at max_reps 5: sizes 3-4 -> 2
        "de4": (1, 1),
        "en1": (2, 5),  # English has no shipped weights: this run's, where size 2 was never filtered out
        "en3": (1, 1), "en4": (1, 1)}  # size 1: half filtered out, above the run's rate of 1 in 3
    assert stats["rehydration"]["deu_Latn"] == {"weights": "shipped", "documents": 2, "characters": len(german)
                                                + len(GERMAN[0]), "documents_rehydrated": 3,
                                                "characters_rehydrated": 2 * len(german) + len(GERMAN[0])}
    assert stats["rehydration"]["eng_Latn"]["weights"] == "run"
    assert stats["rehydration"]["eng_Latn"]["documents"] == 2  # en4 carries a filter reason
    assert stats["rehydration"]["eng_Latn"]["documents_rehydrated"] == 6

    run(load_model(DedupRecipe, RECIPE, [f"input={src}", f"output={tmp_path / 'simple'}", "rehydration.rule=simple"]),
        spark)
    assert {i: r["rehydration_repeats"] for i, r in kept(tmp_path / "simple").items()} == {
        "de1": 3, "de4": 1, "en1": 2, "en3": 1, "en4": 1}
