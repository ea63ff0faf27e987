"""The end-to-end mixture: curate -> dedup -> quality -> Nemotron-CC / REWIRE / TPT -> mixture.json,
with tiny local classifiers and a scripted OpenAI-compatible server answering for the LLM stages."""

from __future__ import annotations

import json
import random

import pyarrow.dataset as pads
import pytest

from jobs.config import load_model
from jobs.pipeline import MixtureRecipe, run
from tests.conftest import ENGLISH, ROOT, html_page, write_warc
from tests.scripted_llm import ScriptedLLM


def answer(messages: list[dict]) -> str:
    prompt = " ".join(m["content"] for m in messages)
    if "<improved response starts>" in prompt:
        improved = " ".join(ENGLISH)
        return f"<thinking starts>plan<thinking ends><improved response starts>{improved}<improved response ends>"
    if "=== End of the document ===" in prompt:
        return "<think>The town's history explains its market and its church.</think>"
    return "\n\n".join(ENGLISH)


TPT_HALF = "{column: quality_bucket, min: 0, fraction: 0.5}"


def stage_sets(server: str, tiny_bert: str, tiny_fasttext: str, nemotron: tuple[str, ...] = (),
               rewire: tuple[str, ...] = ()) -> list[str]:
    """The mixture's stage overrides for tests: tiny local classifiers, the scripted endpoint for every LLM
    stage, Nemotron-CC's high prompts only, TPT on half the documents; ``nemotron``/``rewire`` add to those."""
    engine = ["llm.engine=openai", "llm.model=scripted", f"llm.endpoint.url={server}", f"tokenizer={tiny_bert}"]
    classifiers = [f"classifiers=[{{name: dclm, kind: fasttext, model: {tiny_fasttext}}}, {{name: nemotron_edu, "
                   f"kind: transformer, model: {tiny_bert}, device: cpu, dtype: float32}}, {{name: mixtral_edu, "
                   f"kind: transformer, model: {tiny_bert}, device: cpu, dtype: float32}}]",
                   "buckets.sample_fraction=1.0", "cache.enabled=false"]
    return [f"stages.quality.set={json.dumps(classifiers)}",
            f"stages.synthesize.0.set={json.dumps(['routing.low=[]', 'routing.low_max=-1', *nemotron, *engine])}",
            f"stages.synthesize.1.set={json.dumps([*rewire, *engine])}",
            f"stages.synthesize.2.set={json.dumps([f'select={TPT_HALF}', *engine])}"]


@pytest.mark.slow
def test_the_mixture_runs_every_stage_and_counts_every_kind(tmp_path, ray_local, tiny_bert, tiny_fasttext):
    rng = random.Random(3)
    pages = [{"url": f"https://town{i}.example.org/", "body": html_page(f"T{i}", rng.sample(ENGLISH, 4))}
             for i in range(24)]
    write_warc(tmp_path / "crawl.warc.gz", pages)
    server = ScriptedLLM(answer)
    recipe = load_model(MixtureRecipe, str(ROOT / "jobs" / "recipes" / "mixture.yaml"), [
        f"root={tmp_path / 'out'}", f"input=[{tmp_path / 'crawl.warc.gz'}]",
        f"stages.dedup.set={json.dumps(['spark.master=local[2]', 'spark.driver_memory=2g'])}",
        *stage_sets(server.url, tiny_bert, tiny_fasttext)])
    try:
        result = run(recipe)
    finally:
        server.close()

    base = tmp_path / "out" / "mixture"
    quality = pads.dataset(str(base / "quality"), format="parquet").to_table()
    buckets = quality.column("quality_bucket").to_pylist()
    assert result["kinds"]["real"]["documents"] == quality.num_rows == json.loads(
        (base / "dedup" / "_stats.json").read_text())["kept"]
    synthetic, answered = {}, {}
    for name, kind in (("rephrase-nemotron", "rephrased"), ("rewire", "rewritten"), ("tpt", "thought")):
        stats = json.loads((base / "synth" / name / "_stats.json").read_text())
        synthetic[kind], answered[kind] = stats["rows"].get("data", 0), sum(stats["outputs"].values())
        assert result["kinds"].get(kind, {"documents": 0})["documents"] == synthetic[kind]
    assert answered["rephrased"] == 4 * sum(b >= 18 for b in buckets)  # four knowledge prompts per high document
    assert answered["rewritten"] == sum(7 <= b <= 17 for b in buckets)
    assert 0 < answered["thought"] <= len(buckets) and result["documents"] == quality.num_rows + sum(synthetic.values())
    assert json.loads((base / "mixture.json").read_text())["tokens"] == result["tokens"] > 0
    assert set(result["crawls"]) == {"CC-MAIN-2024-22"}
