"""Benchmark decontamination: both normalisations on hand-made strings; evaluation passages planted in real pages
found and removed (or cut) exactly, boilerplate n-grams ignored, stats exact; the README command; start-up errors;
a re-run that does nothing new."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.decontaminate import DecontamRecipe, main, run
from operators.decontam.index import EvalIndex
from operators.decontam.ngrams import ngram_hashes
from operators.decontam.words import words
from operators.quality.summary import token_counts
from tests.conftest import ROOT, need

RECIPE = str(ROOT / "jobs" / "recipes" / "decontaminate.yaml")
QUESTION = ("Which river carries the most water of any river in the world when measured by its average discharge "
            "at the mouth?")
ANSWER = "The Amazon river carries more water than the next seven largest rivers combined."
TRIVIA = ("The first printed book in Europe using movable metal type is generally agreed to be the Gutenberg Bible "
          "from around 1455.")
COMMON = "please read our terms of use and privacy policy before you continue here"  # 13 words, in 11 pages
# 30 words of question + answer (across the two), as pages quote them: other case, punctuation, line breaks
PLANTED = ["river carries the most water of any river in the world when measured by its average discharge at the "
           "mouth? The Amazon river carries more water than the next seven",
           "RIVER CARRIES THE MOST WATER of any river in the world, when measured by its average discharge at the "
           "mouth. the amazon river carries more water than the next seven",
           "river carries the most water of any river in the world\nwhen measured by its average discharge at the "
           "mouth!! \"The Amazon river\" carries more water than the NEXT seven"]
QUIZ_DOCS = [3, 17, 40, 65, 90, 121, 150]  # plus a page that is the passage alone
TRIVIA_DOCS = [8, 70, 130]
COMMON_DOCS = [5, 22, 33, 48, 77, 99, 110, 140, 160, 170, 175]
SHARDS = [("CC-MAIN-2024-22", "s0"), ("CC-MAIN-2024-22", "s1"), ("CC-MAIN-2024-26", "s0")]
PER_SHARD = 60


def ngrams_of(text: str, normalisation: str, n: int) -> list[str]:
    w = words([text], normalisation)
    _, _, first = ngram_hashes(w, n)
    return [w.normalised(f, n) for f in first.tolist()]


def test_nemo_words_lowercase_and_drop_ascii_punctuation():
    text = "Hello, World! Don't stop-me now... 3.14 Café  \u201cquoted\u201d - x"
    assert ngrams_of(text, "nemo", 1) == ["hello", "world", "dont", "stopme", "now", "314", "café",
                                          "\u201cquoted\u201d", "x"]
    assert ngrams_of("A b, C; d. E", "nemo", 3) == ["a b c", "b c d", "c d e"]


def test_datatrove_words_fold_numbers_punctuation_and_diacritics():
    text = "Hello, World! Don't stop-me now... 3.14 Café 1,000,000 v1.2.3 \u201cquoted\u201d"
    assert ngrams_of(text, "datatrove", 1) == ["hello", "world", "don", "t", "stop", "me", "now", "0", "cafe", "0",
                                               "0", "v0", "0", "quoted"]
    assert ngrams_of("Ünïcödé 42 x", "datatrove", 2) == ["unicode 0", "0 x"]


def test_datatrove_words_are_simplify_texts_on_real_pages(real_texts):
    need("datatrove", "compare")
    from datatrove.utils.text import simplify_text

    w = words(real_texts, "datatrove")
    assert [w.normalised(a, b - a) for a, b in zip(w.offsets[:-1], w.offsets[1:], strict=True)] == [
        simplify_text(t) for t in real_texts]


def test_words_keep_their_place_in_the_original_text():
    texts = ["  Some text, here.", "", "next TEXT"]
    w = words(texts, "nemo")
    assert w.offsets.tolist() == [0, 3, 3, 5]
    assert [texts[t][s:e] for t, s, e in zip(w.text, w.start, w.end, strict=True)] == [
        "Some", "text,", "here.", "next", "TEXT"]


def test_index_holds_ngrams_and_short_texts_whole():
    index, stats = EvalIndex.build([("a", ["one two three four five six", "Seven eight nine."]), ("b", ["ten"])],
                                   n=4, normalisation="nemo", min_words=2)
    assert len(index) == 3 + 1 and index.lengths == [3, 4]
    assert stats == {"a": {"texts": 2, "ngrams": 4, "whole": 1, "too_short": 0},
                     "b": {"texts": 1, "ngrams": 0, "whole": 0, "too_short": 1}}
    w = words(["x one two three four y", "seven eight nine", "eight nine ten"], "nemo")
    found = {length: index.find(*ngram_hashes(w, length)[:2]) for length in index.lengths}
    assert (found[4] >= 0).tolist() == [False, True, False] and (found[3] >= 0).sum() == 1
    again = EvalIndex.from_bytes(index.to_bytes())
    assert again.names == ["a", "b"] and np.array_equal(again.h1, index.h1) and again.lengths == [3, 4]


def _plant(text: str, passage: str, where: str) -> tuple[str, int]:
    """``text`` with `` passage `` inserted at its start, middle (at a space) or end; where the passage starts."""
    at = {"start": 0, "end": len(text)}.get(where)
    if at is None:
        at = text.find(" ", len(text) // 2)
        at = len(text) if at < 0 else at
    return text[:at] + " " + passage + " " + text[at:], at + 1


@pytest.fixture(scope="module")
def corpus(real_texts, tmp_path_factory, s3_client, s3_server):
    """Three shards of 60 real pages with planted passages, the evaluation files (one on S3), what was planted."""
    root = tmp_path_factory.mktemp("decontam")
    # other whitespace than ASCII made spaces: Arrow's whitespace split (token counts) leaves empty tokens at some
    # U+00A0, which Python's does not
    texts = [re.sub(r"[^\S\n\t ]", " ", t) for t in real_texts if len(t) > 600][: PER_SHARD * len(SHARDS) - 1]
    planted: dict[int, tuple[str, int, str]] = {}  # doc -> (benchmark, passage start, passage)
    for k, doc in enumerate(QUIZ_DOCS):
        passage = PLANTED[k % len(PLANTED)]
        texts[doc], at = _plant(texts[doc], passage, ("start", "middle", "end")[k % 3])
        planted[doc] = ("quiz", at, passage)
    texts.append(PLANTED[1])  # a page that is the passage alone: cut to nothing in spans mode
    planted[len(texts) - 1] = ("quiz", 0, PLANTED[1])
    for doc in TRIVIA_DOCS:
        texts[doc], at = _plant(texts[doc], TRIVIA.upper(), "middle")
        planted[doc] = ("trivia", at, TRIVIA.upper())
    for doc in COMMON_DOCS:
        texts[doc] = _plant(texts[doc], COMMON.title(), "middle")[0]
    for i, (crawl, shard) in enumerate(SHARDS):
        rows = [{"id": f"{crawl}-{shard}-{j}", "text": texts[i * PER_SHARD + j], "url": f"https://x.example/{j}",
                 "crawl": crawl, "language": "eng_Latn", "quality_label": "high"} for j in range(PER_SHARD)]
        (root / "in" / crawl).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "in" / crawl / f"{shard}.parquet")
    quiz = root / "quiz.jsonl"
    quiz.write_text("".join(json.dumps(row) + "\n" for row in [
        {"question": QUESTION, "answer": ANSWER}, {"question": COMMON}, "not a row"]) + "{broken\n")
    s3_client.create_bucket(Bucket="evals")
    trivia = root / "trivia.parquet"
    pq.write_table(pa.table({"text": [TRIVIA, "Short text."], "id": [1, 2]}), trivia)
    s3_client.upload_file(str(trivia), "evals", "trivia.parquet")
    evals = (f"[{{name: quiz, path: {quiz}, fields: [question, answer]}}, "
             f"{{name: trivia, path: 's3://evals/trivia.parquet', fields: [text]}}]")
    return {"root": root, "texts": texts, "planted": planted, "evals": evals, "endpoint": s3_server,
            "quiz": str(quiz)}


def recipe_for(corpus, output: str, *extra: str) -> DecontamRecipe:
    return load_model(DecontamRecipe, RECIPE, [f"input={corpus['root'] / 'in'}", f"output={corpus['root'] / output}",
                                               f"evals={corpus['evals']}",
                                               f"storage.endpoint_url={corpus['endpoint']}", *extra])


def read(folder) -> dict[str, dict]:
    rows = pads.dataset(str(folder), format="parquet").to_table().to_pylist()
    return {row["id"]: row for row in rows}


def doc_id(doc: int) -> str:
    crawl, shard = SHARDS[doc // PER_SHARD]
    return f"{crawl}-{shard}-{doc % PER_SHARD}"


def tokens(text: str) -> int:
    return int(token_counts(pa.array([text]))[0])


@pytest.fixture(scope="module")
def document_run(corpus, ray_local):
    recipe = recipe_for(corpus, "doc")
    return recipe, run(recipe)


def test_every_planted_page_is_removed_and_no_clean_one(corpus, document_run):
    recipe, stats = document_run
    out, texts, planted = corpus["root"] / "doc", corpus["texts"], corpus["planted"]
    kept = read(out)
    assert set(kept) == {doc_id(d) for d in range(len(texts)) if d not in planted}
    assert all(kept[doc_id(d)]["text"] == texts[d] for d in range(len(texts)) if d not in planted)
    assert list(pq.read_schema(out / "CC-MAIN-2024-22" / "s0.parquet").names) == [
        "id", "text", "url", "crawl", "language", "quality_label"]
    rejected = read(out / "_rejected")
    assert set(rejected) == {doc_id(d) for d in planted}
    for doc, (bench, _, passage) in planted.items():
        row = rejected[doc_id(doc)]
        assert row["text"] == texts[doc] and row["decontam_benchmark"] == bench
        assert row["decontam_action"] == "document" and row["decontam_spans"] is None
        first = " ".join(passage.lower().replace(",", "").replace(".", "").replace("!", "").replace("?", "")
                         .replace('"', "").split()[:recipe.ngram])
        assert row["decontam_ngram"] == first
    assert stats["benchmarks"] == {
        "quiz": {"documents": 8, "cut": 0, "tokens": sum(tokens(texts[d]) for d in planted if planted[d][0] == "quiz")},
        "trivia": {"documents": 3, "cut": 0, "tokens": sum(tokens(texts[d]) for d in TRIVIA_DOCS)}}
    assert (stats["shards"], stats["documents"], stats["removed"], stats["kept"]) == (3, 180, 11, 169)
    assert stats["tokens_removed"] == sum(tokens(texts[d]) for d in planted)
    assert stats == json.loads((out / "_stats.json").read_text())


def test_an_ngram_in_more_than_max_doc_hits_pages_is_reported_and_ignored(corpus, document_run):
    _, stats = document_run
    assert stats["ignored_ngrams"] == [{"ngram": COMMON, "benchmark": "quiz", "documents": 11}]
    kept = read(corpus["root"] / "doc")
    assert all(COMMON.title() in kept[doc_id(d)]["text"] for d in COMMON_DOCS)
    index = stats["index"]
    assert index["benchmarks"]["quiz"] == {"texts": 2, "ngrams": 34 - 13 + 1 + 1, "whole": 0, "too_short": 0,
                                           "bad_rows": {"missing_answer": 1, "not_an_object": 1, "not_json": 1}}
    assert index["benchmarks"]["trivia"]["too_short"] == 1 and not index["reused"]


def test_a_rerun_does_nothing_new_and_gives_the_same_output(corpus, document_run):
    recipe, stats = document_run
    out = corpus["root"] / "doc"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.name != "_stats.json"}
    again = run(recipe)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.name != "_stats.json"} == before
    assert again["index"]["reused"]
    strip = ("wall_seconds", "index")
    assert {k: v for k, v in again.items() if k not in strip} == {k: v for k, v in stats.items() if k not in strip}
    common = run(recipe.model_copy(update={"max_doc_hits": 11}))  # the 11 pages' n-gram is no longer boilerplate
    assert common["index"]["reused"] and common["ignored_ngrams"] == [] and common["removed"] == 11 + 11
    assert common["benchmarks"]["quiz"]["documents"] == 8 + 11
    assert all(p.stat().st_mtime_ns != before[p] for p in (out / "_ledger").rglob("*.json"))


def _expected_cut(text: str, at: int, length: int, span: int) -> str:
    lo, hi = max(0, at - span), min(len(text), at + length + span)
    while lo > 0 and not text[lo - 1].isspace():
        lo -= 1
    while hi < len(text) and not text[hi].isspace():
        hi += 1
    return "\n".join(p for p in (text[:lo].strip(), text[hi:].strip()) if p)


def test_spans_mode_cuts_the_passage_and_200_characters_around_it_datatrove_words(corpus, ray_local):
    stats = run(recipe_for(corpus, "spans", "mode=spans", "normalisation=datatrove", "ngram=12"))
    texts, planted = corpus["texts"], corpus["planted"]
    kept, rejected = read(corpus["root"] / "spans"), read(corpus["root"] / "spans" / "_rejected")
    alone = len(texts) - 1
    assert set(kept) == {doc_id(d) for d in range(len(texts)) if d != alone}
    for doc, (_, at, passage) in planted.items():
        if doc == alone:
            continue
        # the match ends at the passage's last word: a full stop after it is punctuation, no part of the word
        assert kept[doc_id(doc)]["text"] == _expected_cut(texts[doc], at, len(passage.rstrip(".")), 200)
        [span] = rejected[doc_id(doc)]["decontam_spans"]
        assert passage in span and rejected[doc_id(doc)]["decontam_action"] == "spans"
    assert rejected[doc_id(alone)]["decontam_action"] == "document"
    assert stats["cut"] == 10 and stats["removed"] == 1
    assert stats["benchmarks"]["trivia"] == {"documents": 0, "cut": 3, "tokens": sum(
        tokens(texts[d]) - tokens(kept[doc_id(d)]["text"]) for d in TRIVIA_DOCS)}


def test_an_unreadable_shard_is_named_and_nothing_is_removed_without_its_counts(corpus, ray_local, tmp_path):
    (tmp_path / "in" / "CC-MAIN-2024-22").mkdir(parents=True)
    (tmp_path / "in" / "CC-MAIN-2024-22" / "s0.parquet").write_bytes(
        (corpus["root"] / "in" / "CC-MAIN-2024-22" / "s0.parquet").read_bytes())
    (tmp_path / "in" / "CC-MAIN-2024-22" / "zz.parquet").write_bytes(b"PAR1 not parquet")
    recipe = recipe_for(corpus, "unused", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    with pytest.raises(RuntimeError, match=r"1 shard\(s\) failed \(0 of 2 finished\): CC-MAIN-2024-22/zz: cannot read"):
        run(recipe)
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert [f["shard"] for f in stats["failed"]] == ["CC-MAIN-2024-22/zz"] and stats["shards"] == 0
    assert not (tmp_path / "out" / "CC-MAIN-2024-22").exists()


def test_readme_command_runs_the_shipped_recipe(corpus):
    out = corpus["root"] / "cli"
    done = subprocess.run([sys.executable, "-m", "jobs.decontaminate", "--config", RECIPE,
                           "--set", f"input={corpus['root'] / 'in'}", "--set", f"output={out}",
                           "--set", f"evals=[{{name: quiz, path: {corpus['quiz']}, fields: [question, answer]}}]"],
                          cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["shards"] == 3 and summary["documents"] == 180 and summary["removed"] == 8
    assert summary["cut"] == 0


def test_unknown_key_and_missing_eval_file_stop_at_start(corpus, tmp_path, capsys):
    base = ["--config", RECIPE, "--set", f"input={corpus['root'] / 'in'}", "--set", f"output={tmp_path / 'out'}"]
    assert main([*base, "--set", f"evals=[{{name: q, path: {corpus['quiz']}, fields: [question]}}]",
                 "--set", "ngramz=12"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ngramz:")
    assert main([*base]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: evals[0].path: data/evals/mmlu.jsonl does not exist"
    trivia = "{name: t, path: 's3://evals/trivia.parquet', fields: [text, answer]}"
    assert main([*base, "--set", f"evals=[{trivia}]", "--set", f"storage.endpoint_url={corpus['endpoint']}"]) == 2
    assert capsys.readouterr().err.strip() == ("error: evals[0].fields: s3://evals/trivia.parquet has no column(s) "
                                               "answer (its columns: text, id)")
    assert not (tmp_path / "out").exists()
