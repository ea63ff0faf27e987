"""Prompt files, chunking and output handling, on hand-written texts and model outputs."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from operators.llm.chunking import chunk_text
from operators.llm.outputs import assemble, strip_preamble, validate
from operators.llm.prompts import load_prompt, shipped_prompts
from operators.llm.requests import route, shard_requests
from tests.conftest import ENGLISH, ROOT

GOLDEN = ROOT / "tests" / "golden"
SAMPLE = "The old bridge was built in 1820.\n\nIt crosses the river near the mill."


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def render(name: str) -> str:
    p = load_prompt(name)
    ratio = list(p.length_ratio) if p.length_ratio else None
    text = f"# {p.ref} family={p.family} max_input_tokens={p.max_input_tokens} length_ratio={ratio}\n"
    return text + "".join(f"--- {m['role']}\n{m['content']}\n" for m in p.messages(SAMPLE))


@pytest.mark.parametrize("name", shipped_prompts())
def test_prompts_render_exactly_as_their_golden_files(name):
    assert render(name) == (GOLDEN / f"{name}.txt").read_text()


def test_the_shipped_prompts_and_nemotron_budgets():
    assert shipped_prompts() == ["dataman_rating", "fineweb_edu_rating", "nemotron_distill", "nemotron_extract",
                                 "nemotron_list", "nemotron_qa", "nemotron_wikipedia", "prox_chunk", "prox_chunk_gair",
                                 "prox_doc", "prox_doc_gair", "rewire", "tpt", "wrap_easy", "wrap_hard",
                                 "wrap_medium", "wrap_qa"]
    budgets = {n: load_prompt(n).max_input_tokens for n in shipped_prompts() if n.startswith("nemotron")}
    assert budgets == {"nemotron_qa": 1000, "nemotron_distill": 2000, "nemotron_extract": 1400,
                       "nemotron_list": 1000, "nemotron_wikipedia": 512}


def test_bad_prompt_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown prompt 'wrap_tiny'"):
        load_prompt("wrap_tiny")
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "operators/llm/prompts/wrap_easy.yaml").read_text().replace("{text}", "{txt}"))
    with pytest.raises(ValueError, match="exactly one"):
        load_prompt(str(bad))


def test_chunks_follow_paragraphs_then_sentences_then_words():
    text = "A b c. D e f g. H i.\n\nJ k l m n o p q r s t u v w x y z.\n\nshort para."
    assert chunk_text(text, 100, words) == [text]
    assert chunk_text(text, 5, words) == ["A b c.", "D e f g.", "H i.", "J k l m n", "o p q r s", "t u v w x",
                                          "y z.", "short para."]
    assert chunk_text("one two\n\nthree four", 2, words) == ["one two", "three four"]


def test_chunking_loses_nothing_and_keeps_order():
    text = "\n\n".join(ENGLISH * 3)
    for budget in (7, 20, 45, 80):
        chunks = chunk_text(text, budget, words)
        assert all(n <= budget for n in words(chunks))
        assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_chunking_counts_each_piece_once_and_each_document_once_per_budget():
    calls: list[str] = []

    def counting(texts: list[str]) -> list[int]:
        calls.extend(texts)
        return words(texts)

    text = "\n\n".join(ENGLISH)
    assert chunk_text(text, 20, counting) == chunk_text(text, 20, words)
    over = [t for t in calls if len(t.split()) > 20]
    assert len(over) > 3 and len(over) == len(set(over))  # a piece over budget is split, not counted again
    assert text not in calls and calls[:len(ENGLISH)] == ENGLISH  # one pass over the paragraphs, not the whole first
    table = pa.table({"id": ["a"], "text": [text]})
    calls.clear()
    one = shard_requests(table, "c/s", ["wrap_easy"], None, counting, seed=0)
    alone = len(calls)
    four = shard_requests(table, "c/s", ["wrap_easy", "wrap_medium", "wrap_hard", "wrap_qa"], None, counting, seed=0)
    assert len(calls) == 2 * alone  # the four WRAP prompts share one budget: chunked once
    assert [r["chunk"] for r in four if r["prompt_name"] == "wrap_easy"] == [r["chunk"] for r in one]


def test_token_counter_counts_as_the_tokenizer_call_does(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from operators.llm.requests import token_counter

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.train_from_iterator(ENGLISH * 5, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.enable_truncation(max_length=8)  # saved in tokenizer.json; counting must not truncate
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>").save_pretrained(tmp_path)
    texts = [*ENGLISH, "<s>a special token</s> inside", "", "ünïcödé — 数字 🙂"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    expected = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    assert token_counter(str(tmp_path))(texts) == expected
    assert max(expected) > 8


def test_assembly_restores_chunk_order():
    parts = [(i, f"part {i}.") for i in range(12)]
    random.Random(3).shuffle(parts)
    assert assemble(parts) == "\n\n".join(f"part {i}." for i in range(12))


@pytest.mark.parametrize("raw, clean", [
    ("Here is a paraphrased version of the text:\n\nThe bridge is old.", "The bridge is old."),
    ("Sure! Here's the rewritten text:\nThe bridge is old.", "The bridge is old."),
    ("Rewritten text: The bridge is old.", "The bridge is old."),
    ("Here are the key facts:\n- The bridge dates from 1820.", "- The bridge dates from 1820."),
    ("The bridge is old. Here is why: it was built in 1820.", "The bridge is old. Here is why: it was built in 1820."),
])
def test_preambles_are_stripped_and_content_kept(raw, clean):
    assert strip_preamble(raw) == clean


def test_validators_give_the_first_failing_rule():
    source = "The old bridge was built in 1820 and it crosses the river near the mill on the east side."
    outputs = ["", "The bridge", "I'm sorry, but I can't help with that request today.",
               "Die alte Brücke wurde 1820 gebaut und überquert den Fluss bei der Mühle.", "Old bridge.",
               source, "Built in 1820, the old bridge spans the river by the mill, on its eastern side."]
    reasons = validate(outputs, [source] * 7, [False, True, False, False, False, False, False], (0.3, 3.0), 0.9,
                       ["en", "en", "en", "de", "en", "en", "en"], ["en"] * 7)
    assert reasons == ["empty", "truncated", "refusal", "wrong_language", "length_ratio", "copy", None]


def test_routing_by_a_quality_column_and_request_counts():
    table = pa.table({"id": ["hi", "lo", "none"], "text": [SAMPLE, SAMPLE, SAMPLE], "score": [0.9, 0.1, None]})
    routing = {"column": "score", "threshold": 0.5, "high": ["nemotron_qa", "nemotron_list"],
               "low": ["nemotron_wikipedia"]}
    assert route(table, [], routing) == [["nemotron_qa", "nemotron_list"], ["nemotron_wikipedia"],
                                         ["nemotron_wikipedia"]]
    rows = shard_requests(table, "c/s", [], routing, words, seed=7)
    assert [(r["parent_id"], r["prompt_name"], r["chunk_index"]) for r in rows] == [
        ("hi", "nemotron_qa", 0), ("hi", "nemotron_list", 0), ("lo", "nemotron_wikipedia", 0),
        ("none", "nemotron_wikipedia", 0)]
    assert {r["expected"] for r in rows} == {4} and {r["request_seed"] for r in rows} == {7}
    with pytest.raises(ValueError, match="routing.column"):
        route(table, [], routing | {"column": "quality_score"})


def test_nemotron_bucket_routing_leaves_the_middle_buckets_alone():
    table = pa.table({"quality_bucket": pa.array([19, 18, 17, 12, 11, 0, None], pa.int8())})
    routing = {"column": "quality_bucket", "threshold": 18, "low_max": 11, "high": ["nemotron_qa"],
               "low": ["nemotron_wikipedia"]}
    assert route(table, [], routing) == [["nemotron_qa"], ["nemotron_qa"], [], [], ["nemotron_wikipedia"],
                                         ["nemotron_wikipedia"], []]
