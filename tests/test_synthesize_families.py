"""REWIRE and TPT end to end through the ``openai`` engine, against a scripted OpenAI-compatible server:
exact outputs from hand-written model answers (a tiny model's answers would be noise)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.synthesize import SynthRecipe, run
from operators.schema import conform, output_schema
from tests.conftest import ROOT
from tests.scripted_llm import ScriptedLLM

DOCS = {
    "good": "The bridge over the Danube in Vienna was opened in 1876 and is 350 metres long.",
    "lossy": "Marie Curie won the Nobel Prize in 1903 and again in 1911 in Paris.",
    "untagged": "The harbour of Lisbon handled 12,000 ships in 1755 before the earthquake.",
    "outside": "This page has a low quality score and must not be rewritten at all.",
}
REWIRE_ANSWERS = {
    "good": "<thinking starts>The draft lacks context about the river crossing.<thinking ends>\n"
            "<improved response starts>Opened in 1876, the bridge over the Danube in Vienna spans 350 metres "
            "and joined both banks of the city.<improved response ends>",
    "lossy": "<thinking starts>Shorten it.<thinking ends><improved response starts>A scientist won two prizes in "
             "a European capital, which is remarkable.<improved response ends>",
    "untagged": "Here is a better version: the harbour was busy.",
}


def write_input(folder) -> str:
    rows = [{"id": k, "text": t, "language": "en", "quality_bucket": 3 if k == "outside" else 12}
            for k, t in DOCS.items()]
    path = folder / "CC-MAIN-2024-22" / "s0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({"quality_bucket": pa.int8()})), path)
    return str(folder)


def which(messages: list[dict]) -> str:
    return next(k for k, t in DOCS.items() if t in messages[-1]["content"])


def synthesize(tmp_path, recipe: str, server: ScriptedLLM, tokenizer: str, *sets: str):
    r = load_model(SynthRecipe, str(ROOT / "jobs" / "recipes" / recipe), [
        f"input={write_input(tmp_path / 'in')}", f"output={tmp_path / 'out'}", "llm.engine=openai",
        "llm.model=scripted", f"llm.endpoint.url={server.url}", f"tokenizer={tokenizer}", *sets])
    stats = run(r)
    kept = pads.dataset(str(tmp_path / "out"), format="parquet").to_table().to_pylist()
    folder = tmp_path / "out" / "_rejected"
    rejected = pads.dataset(str(folder), format="parquet").to_table().to_pylist() if folder.exists() else []
    return stats, {r["parent_id"]: r for r in kept}, {r["parent_id"]: r for r in rejected}


@pytest.mark.slow
def test_rewire_keeps_the_improved_span_only_and_rejects_by_reason(tmp_path, ray_local, tiny_bert):
    server = ScriptedLLM(lambda messages: REWIRE_ANSWERS[which(messages)])
    try:
        stats, kept, rejected = synthesize(tmp_path, "rewire.yaml", server, tiny_bert)
    finally:
        server.close()
    assert len(server.requests) == 3  # the document outside the quality band is not sent
    assert set(kept) == {"good"} and kept["good"]["text"] == (
        "Opened in 1876, the bridge over the Danube in Vienna spans 350 metres and joined both banks of the city.")
    assert kept["good"]["faithfulness"] == 1.0 and kept["good"]["synth_task"] == "rewrite"
    assert "thinking" not in kept["good"]["text"] and kept["good"]["synth_prompt"] == "rewire@1"
    assert {k: r["filter_reason"] for k, r in rejected.items()} == {"lossy": "synth.unfaithful",
                                                                     "untagged": "synth.no_tags"}
    assert rejected["lossy"]["faithfulness"] == 0.0
    assert stats["outputs"] == {"kept": 1, "synth.no_tags": 1, "synth.unfaithful": 1}


@pytest.mark.slow
def test_tpt_appends_the_thinking_to_the_document(tmp_path, ray_local, tiny_bert):
    server = ScriptedLLM(lambda messages: f"<think>Why does {which(messages)} matter? Because it explains the "
                                          f"cause and the effect in detail.</think> So the answer is short.")
    try:
        stats, kept, rejected = synthesize(tmp_path, "tpt.yaml", server, tiny_bert)
    finally:
        server.close()
    assert rejected == {} and set(kept) == set(DOCS)
    assert kept["good"]["text"] == (DOCS["good"] + "\n\n<think>Why does good matter? Because it explains the cause "
                                                   "and the effect in detail.</think>")
    assert kept["good"]["synth_task"] == "think" and kept["good"]["synth_prompt"] == "tpt@1"
    assert stats["tokens_out"] == sum(r["tokens_out"] for r in kept.values()) == 4 * 19


PAGE = ["Home | About | Contact",
        "The history of the town goes back to the twelfth century &amp; earlier settlements.",
        "During the following centuries the town grew into a busy market place for salt and cloth.",
        "The old church in the centre of the town was built in 1350 and is still used today.",
        "Accept cookies to continue"]
PROX_DOCS = {"page": "\n".join(PAGE),
             "spam": "Buy cheap watches now, free shipping, click here, best deals, limited offer, order today.",
             "hostile": "A quiet village in the hills where farmers grow apples, pears and plums every autumn."}
PROX_ANSWERS = {
    ("doc", "page"): "keep_doc()", ("doc", "spam"): "drop_doc()", ("doc", "hostile"): "keep_doc()",
    ("chunk", "page"): 'remove_lines(line_start=0, line_end=0)\nremove_lines(line_start=4, line_end=4)\n'
                       'normalize(source_str="&amp;", target_str="&")',
    ("chunk", "hostile"): "__import__('os').system('touch /tmp/cc-refinery-prox-pwned')\nexec('print(1)')",
}


@pytest.mark.slow
def test_prox_runs_doc_and_chunk_programs_without_executing_them(tmp_path, ray_local, tiny_bert):
    def answer(messages):
        content = messages[-1]["content"]
        doc = next(k for k, t in PROX_DOCS.items() if t.split("\n")[1 if k == "page" else 0][:30] in content)
        return PROX_ANSWERS[("chunk" if "[000]" in content else "doc", doc)]

    rows = [{"id": k, "text": t, "language": "en"} for k, t in PROX_DOCS.items()]
    path = tmp_path / "in" / "CC-MAIN-2024-22" / "s0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)
    server = ScriptedLLM(answer)
    try:
        r = load_model(SynthRecipe, str(ROOT / "jobs" / "recipes" / "prox.yaml"), [
            f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "llm.engine=openai", "llm.model=scripted",
            f"llm.endpoint.url={server.url}", f"tokenizer={tiny_bert}"])
        stats = run(r)
    finally:
        server.close()
    kept = {x["parent_id"]: x for x in pads.dataset(str(tmp_path / "out"), format="parquet").to_table().to_pylist()}
    rejected = pads.dataset(str(tmp_path / "out" / "_rejected"), format="parquet").to_table().to_pylist()
    assert kept["page"]["text"] == "\n".join([PAGE[1].replace("&amp;", "&"), PAGE[2], PAGE[3]])
    assert kept["hostile"]["text"] == PROX_DOCS["hostile"]  # two errors: the program is ignored
    assert [(x["parent_id"], x["filter_reason"]) for x in rejected] == [("spam", "prox.drop_doc")]
    assert not Path("/tmp/cc-refinery-prox-pwned").exists()
    assert json.loads(kept["page"]["prox_program"])["doc_program"] == "keep_doc()"
    ledger = json.loads((tmp_path / "out" / "_ledger" / "CC-MAIN-2024-22" / "s0.json").read_text())
    assert ledger["prox"]["calls"]["remove_lines"] == 2 and ledger["prox"]["calls"]["lines_removed"] == 2
    assert ledger["prox"]["errors"]["hostile"] == 2 and ledger["prox"]["errors"]["program_ignored"] == 1
    assert stats["outputs"] == {"kept": 2, "prox.drop_doc": 1}
    assert not (tmp_path / "out" / "_prox_doc" / "CC-MAIN-2024-22" / "s0.parquet").exists()


@pytest.mark.slow
def test_rewire_post_filter_keeps_the_top_share_and_records_both_scores(tmp_path, ray_local, tiny_bert,
                                                                         tiny_fasttext):
    from jobs.synthesize.job import _scorer
    from operators.io.storage import Storage

    docs = {f"d{i}": f"The bridge number {i} over the Danube in Vienna was opened in {1870 + i}." for i in range(4)}
    extra = ["It is a landmark of the city and its history is taught in schools across the region.",
             "Buy cheap tickets now, click here for free shipping and the best deals, limited offer today."]
    rows = [{"id": k, "text": t, "language": "en", "quality_bucket": 12} for k, t in docs.items()]
    path = tmp_path / "in" / "CC-MAIN-2024-22" / "s0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({"quality_bucket": pa.int8()})), path)

    def improve(messages):
        doc = next(k for k, t in docs.items() if t in messages[-1]["content"])
        return f"<improved response starts>{docs[doc]} {extra[int(doc[1:]) % 2]}<improved response ends>"

    server = ScriptedLLM(improve)
    try:
        r = load_model(SynthRecipe, str(ROOT / "jobs" / "recipes" / "rewire.yaml"), [
            f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "llm.engine=openai", "llm.model=scripted",
            f"llm.endpoint.url={server.url}", f"tokenizer={tiny_bert}", "validation.check_language=false",
            f"post_filter={{model: {tiny_fasttext}, top_fraction: 0.5}}"])
        stats = run(r)
    finally:
        server.close()
    kept = pads.dataset(str(tmp_path / "out"), format="parquet").to_table().to_pylist()
    rejected = pads.dataset(str(tmp_path / "out" / "_rejected"), format="parquet").to_table().to_pylist()
    assert len(kept) == 2 and {x["filter_reason"] for x in rejected} == {"synth.below_top_share"} and len(rejected) == 2
    assert min(x["score_after"] for x in kept) >= max(x["score_after"] for x in rejected)
    score = _scorer(tiny_fasttext, "__label__hq", Storage())
    for row in kept + rejected:
        assert row["score_before"] == pytest.approx(float(score([docs[row["parent_id"]]])[0]))
        assert row["score_after"] == pytest.approx(float(score([row["text"]])[0]))
    assert stats["outputs"] == {"kept": 2, "synth.below_top_share": 2}
