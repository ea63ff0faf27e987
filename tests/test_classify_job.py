"""The quality job on local Ray: a tiny random BERT through Ray Data equals the model called directly;
fastText and buckets with saved cut-points; resume; cache; errors naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.classify import run
from jobs.classify.recipe import QualityRecipe
from jobs.common.recipe import load_model
from operators.io.storage import Storage
from operators.quality import buckets as qb
from operators.quality.transformer import Scorer, int_score, load_tokenizer, tokenize
from operators.schema import conform, output_schema
from tests.conftest import ENGLISH, GERMAN, ROOT

RECIPE = str(ROOT / "jobs" / "recipes" / "quality.yaml")
SPAM = ["Buy cheap watches now, free shipping on every order, click here today.",
        "Best deals! Login to see your cart. Hot sale, coupon inside, limited offer."]


def write_input(folder, crawl: str = "CC-MAIN-2024-22", shards: int = 2) -> dict[str, list[str]]:
    """Shards of real-looking English, German and spam paragraphs; returns their texts by shard."""
    texts = ENGLISH + GERMAN + SPAM
    by_shard = {f"s{i}": texts[i::shards] for i in range(shards)}
    for name, shard_texts in by_shard.items():
        rows = [{"id": f"{crawl}-{name}-{j}", "text": t, "url": f"https://x.example/{name}/{j}"}
                for j, t in enumerate(shard_texts)]
        path = folder / crawl / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)
    return by_shard


def recipe(tmp_path, tiny_bert, tiny_fasttext, *extra: str, src=None) -> QualityRecipe:
    return load_model(QualityRecipe, RECIPE, [
        f"input={src or tmp_path / 'in'}", f"output={tmp_path / 'out'}",
        f"classifiers=[{{name: dclm, kind: fasttext, model: {tiny_fasttext}}}, {{name: edu, kind: transformer, "
        f"model: {tiny_bert}, device: cpu, dtype: float32, batch_size: 4}}]",
        "buckets.classifiers=[dclm, edu]", "buckets.sample_fraction=1.0", "cache.enabled=false", *extra])


def read(out) -> list[dict]:
    return pads.dataset(str(out), format="parquet").to_table().to_pylist()


@pytest.mark.slow
def test_scores_buckets_and_saved_cut_points(tmp_path, ray_local, tiny_bert, tiny_fasttext):
    write_input(tmp_path / "in")
    stats = run(recipe(tmp_path, tiny_bert, tiny_fasttext))
    rows = read(tmp_path / "out")
    assert len(rows) == len(ENGLISH + GERMAN + SPAM) == stats["documents"]

    scorer, tokenizer = Scorer(tiny_bert), load_tokenizer(tiny_bert)
    for row in rows:  # the Ray Data stage equals the model called on the document alone
        flat, offsets = tokenize(tokenizer, pa.array([row["text"]]), 512)
        direct = scorer(flat, offsets)[0]
        assert row["edu_score"] == pytest.approx(direct, abs=1e-5)
        assert row["edu_int_score"] == int_score(np.array([direct]))[0]
    dclm = {r["text"]: r["dclm_score"] for r in rows}
    assert min(dclm[t] for t in ENGLISH) > max(dclm[t] for t in SPAM)

    saved = qb.load_latest(Storage(), str(tmp_path / "out" / "_calibration"))
    assert (saved.crawl, saved.version, saved.documents) == ("CC-MAIN-2024-22", 1, len(rows))
    for row in rows:  # the ensemble is the highest of the two classifiers' buckets under the saved cut-points
        expected = max(qb.bucket(np.array([row[f"{n}_score"]], np.float32), saved.classifiers[n].cut_points)[0]
                       for n in ("dclm", "edu"))
        assert row["quality_bucket"] == expected
        assert row["quality_label"] == qb.LABELS[expected]
    assert sum(stats["bucket_token_shares"]) == pytest.approx(1.0, abs=1e-5)
    assert stats["drift"]["CC-MAIN-2024-22"]["edu"]["psi"] is not None
    assert sum(stats["histograms"]["edu"]) == len(rows)

    write_input(tmp_path / "in", crawl="CC-MAIN-2024-26")  # a later crawl reuses the cut-points
    later = run(recipe(tmp_path, tiny_bert, tiny_fasttext))
    assert sorted(os.listdir(tmp_path / "out" / "_calibration")) == ["CC-MAIN-2024-22.v1.json"]
    assert later["shards"] == 4 and set(later["drift"]) == {"CC-MAIN-2024-22", "CC-MAIN-2024-26"}
    run(recipe(tmp_path, tiny_bert, tiny_fasttext, "buckets.recalibrate=true", "buckets.calibrate_on=CC-MAIN-2024-22"))
    assert sorted(os.listdir(tmp_path / "out" / "_calibration")) == ["CC-MAIN-2024-22.v1.json",
                                                                     "CC-MAIN-2024-22.v2.json"]


@pytest.mark.slow
def test_resume_redoes_only_unfinished_shards_and_the_cache_answers_repeats(tmp_path, ray_local, tiny_bert,
                                                                           tiny_fasttext):
    write_input(tmp_path / "in")
    shared_cache = f"cache.root={tmp_path / 'cache'}"
    first = run(recipe(tmp_path, tiny_bert, tiny_fasttext, "cache.enabled=true", shared_cache))
    assert first["cache_hits"] == {"edu": 0}
    out = tmp_path / "out" / "CC-MAIN-2024-22"
    kept = (out / "s0.parquet").stat().st_mtime_ns
    (tmp_path / "out" / "_ledger" / "CC-MAIN-2024-22" / "s1.json").unlink()  # killed before s1's ledger entry
    again = run(recipe(tmp_path, tiny_bert, tiny_fasttext, "cache.enabled=true", shared_cache))
    assert (out / "s0.parquet").stat().st_mtime_ns == kept
    assert again["cache_hits"] == {"edu": first["documents"] - pq.read_metadata(out / "s0.parquet").num_rows}

    other = tmp_path / "other"  # the same pages in another run: every transformer score from the cache
    second = run(recipe(other, tiny_bert, tiny_fasttext, "cache.enabled=true", shared_cache, src=tmp_path / "in"))
    assert second["cache_hits"] == {"edu": second["documents"]}
    assert sorted((r["id"], r["edu_score"]) for r in read(other / "out")) == sorted(
        (r["id"], r["edu_score"]) for r in read(tmp_path / "out"))


def test_a_bucketed_score_the_input_lacks_is_named(tmp_path, tiny_bert, tiny_fasttext):
    write_input(tmp_path / "in")
    with pytest.raises(ValueError, match=r"s0\.parquet has no column\(s\) ghost_score"):
        run(recipe(tmp_path, tiny_bert, tiny_fasttext, "buckets.classifiers=[dclm, ghost]"))


@pytest.mark.slow
def test_cli_runs_the_shipped_recipe_with_local_models(tmp_path, tiny_bert, tiny_fasttext):
    write_input(tmp_path / "in")
    sets = [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"classifiers.dclm.model={tiny_fasttext}",
            "classifiers.dclm.filename=", *[f"classifiers.{n}.{k}={v}" for n in ("fineweb_edu", "nemotron_edu",
                                                                                 "mixtral_edu")
                                            for k, v in (("model", tiny_bert), ("device", "cpu"),
                                                         ("dtype", "float32"))],
            "buckets.sample_fraction=1.0", f"cache.root={tmp_path / 'cache'}"]
    done = subprocess.run([sys.executable, "-m", "jobs.classify", "--config", RECIPE,
                           *[arg for s in sets for arg in ("--set", s)]], cwd=ROOT,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert stats["documents"] == 10 and stats["failed"] == []
    columns = pq.read_schema(tmp_path / "out" / "CC-MAIN-2024-22" / "s0.parquet").names
    assert {"dclm_score", "fineweb_edu_score", "fineweb_edu_int_score", "quality_bucket", "quality_label"} <= set(
        columns)


def test_cli_without_gpus_stops_naming_the_setting(tmp_path):
    write_input(tmp_path / "in")
    done = subprocess.run([sys.executable, "-m", "jobs.classify", "--config", RECIPE, "--set",
                           f"input={tmp_path / 'in'}", "--set", f"output={tmp_path / 'out'}"],
                          cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: 2 shard(s) not finished: classifiers: the transformer classifiers need 3 GPU(s) (replicas x "
        "num_gpus) and the cluster has 0: add GPU nodes, or set device: cpu on them")


@pytest.mark.slow
def test_llm_rating_runs_the_shipped_recipe_on_vllm_cpu(tmp_path, tiny_model):
    write_input(tmp_path / "in")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the recipe's llm.cpu_kv_cache_gb sizes the KV cache, as for a user
    sets = [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"rating.llm.model={tiny_model}",
            "rating.llm.device=cpu", "rating.llm.tensor_parallel_size=1",
            # eager (a user setting): the rating path is tested here; the compiled CPU engine is run by
            # tests/test_synthesize_cli.py and tests/test_pipeline_cli.py on the same engine code
            "rating.llm.enforce_eager=true"]
    done = subprocess.run([sys.executable, "-m", "jobs.classify", "--config", str(ROOT / "jobs" / "recipes" /
                                                                                  "quality-llm.yaml"),
                           *[arg for s in sets for arg in ("--set", s)]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read(tmp_path / "out")
    assert len(rows) == 10 and all(r["llm_edu_score"] is None for r in rows)  # a random model never says a score
    assert {r["rating_reason"] for r in rows} == {"rating.missing"}
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert stats["rated"] == 0 and stats["reasons"] == {"rating.missing": 10} and stats["failed"] == []
