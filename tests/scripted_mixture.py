"""The mixture's stage overrides for tests that run the whole pipeline on this machine: tiny local classifiers,
and a scripted OpenAI-compatible endpoint (tests/scripted_llm.py) answering every LLM stage."""

from __future__ import annotations

import json

from tests.conftest import ENGLISH


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
               rewire: tuple[str, ...] = (), quality: tuple[str, ...] = ()) -> list[str]:
    """The mixture's stage overrides for tests: tiny local classifiers, the scripted endpoint for every LLM
    stage, Nemotron-CC's high prompts only, TPT on half the documents; ``nemotron``/``rewire``/``quality`` add
    to those."""
    engine = ["llm.engine=openai", "llm.model=scripted", f"llm.endpoint.url={server}", f"tokenizer={tiny_bert}"]
    classifiers = [f"classifiers=[{{name: dclm, kind: fasttext, model: {tiny_fasttext}}}, {{name: nemotron_edu, "
                   f"kind: transformer, model: {tiny_bert}, device: cpu, dtype: float32}}, {{name: mixtral_edu, "
                   f"kind: transformer, model: {tiny_bert}, device: cpu, dtype: float32}}]",
                   "buckets.sample_fraction=1.0", "cache.enabled=false", *quality]
    return [f"stages.quality.set={json.dumps(classifiers)}",
            f"stages.synthesize.0.set={json.dumps(['routing.low=[]', 'routing.low_max=-1', *nemotron, *engine])}",
            f"stages.synthesize.1.set={json.dumps([*rewire, *engine])}",
            f"stages.synthesize.2.set={json.dumps([f'select={TPT_HALF}', *engine])}"]
