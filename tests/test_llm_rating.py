"""Rating prompts and the parsing of their answers, on hand-written model outputs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from operators.llm.prompts import Prompt, load_prompt
from operators.llm.rating import COLUMNS, DATAMAN_CRITERIA, KINDS, parse, schema, to_table
from tests.test_llm_text import GOLDEN, render

CRITERIA_COLUMNS = ["dataman_accuracy", "dataman_coherence", "dataman_language_consistency",
                    "dataman_semantic_density", "dataman_knowledge_novelty", "dataman_topic_focus",
                    "dataman_creativity", "dataman_professionalism", "dataman_style_consistency",
                    "dataman_grammatical_diversity", "dataman_structural_standardization", "dataman_originality",
                    "dataman_sensitivity"]


def dataman_answer(scores: dict[str, str] | None = None, overall: str = "4", domain: str | None = "E") -> str:
    """A DataMan answer with every criterion at 4 except ``scores``; ``None`` leaves a line out."""
    scores = {c: "4" for c in DATAMAN_CRITERIA} | (scores or {})
    lines = [f"{c}: {v}" for c, v in scores.items() if v is not None] + [f"Overall: {overall}"]
    return "The text is a clear technical note.\n\n" + "\n".join(lines + ([f"Domain: {domain}"] if domain else []))


def all_fours(overall: int = 4, domain: str = "Technology") -> dict:
    return dict.fromkeys(CRITERIA_COLUMNS, 4) | {"dataman_overall": overall, "dataman_domain": domain}


@pytest.mark.parametrize("name", KINDS)
def test_rating_prompts_render_exactly_as_their_golden_files(name):
    prompt = load_prompt(name)
    assert (prompt.family, prompt.length_ratio) == ("rating", None)
    assert render(name) == (GOLDEN / f"{name}.txt").read_text()


def test_rating_budgets():
    assert {k: load_prompt(k).max_input_tokens for k in KINDS} == {"fineweb_edu_rating": 512, "dataman_rating": 1896}


def test_only_ratings_may_leave_out_the_length_ratio():
    fields = {"name": "x", "version": 1, "max_input_tokens": 10, "system": "s", "user": "{text}"}
    assert Prompt.model_validate(fields | {"family": "rating"}).length_ratio is None
    with pytest.raises(ValueError, match="length_ratio is required, except for family 'rating'"):
        Prompt.model_validate(fields | {"family": "wrap"})


def test_the_answer_formats_the_prompts_ask_for_parse():
    edu = load_prompt("fineweb_edu_rating").user.splitlines()[-1]
    assert edu == "Educational score: N"
    assert parse("fineweb_edu_rating", edu) == (None, "rating.missing")
    assert parse("fineweb_edu_rating", edu.replace("N", "2")) == ({"llm_edu_score": 2}, None)
    dataman = "\n".join(load_prompt("dataman_rating").user.splitlines()[-15:])
    assert parse("dataman_rating", dataman.replace(": N", ": 4").replace(": X", ": E")) == (all_fours(), None)


@pytest.mark.parametrize("answer, expected", [
    ("Educational score: 3", ({"llm_edu_score": 3}, None)),
    ("The page explains photosynthesis for pupils.\nIt has no exercises.\n\nEducational score: 4\n\nThanks!",
     ({"llm_edu_score": 4}, None)),
    ("I give points 1, 2 and 3: basic information (1), some educational elements (2), key curriculum "
     "concepts (3); 4 and 5 need exercises.\nEducational score: 3", ({"llm_edu_score": 3}, None)),
    ("Justification: a short recipe page.\n**Educational score: 1**", ({"llm_edu_score": 1}, None)),
    ("**Educational Score:** 2", ({"llm_edu_score": 2}, None)),
    ("EDUCATIONAL SCORE: 0", ({"llm_edu_score": 0}, None)),
    ("Educational score: 3/5", ({"llm_edu_score": 3}, None)),
    ("Educational score: 3 out of 5.", ({"llm_edu_score": 3}, None)),
    ("Educational score: 3.0", ({"llm_edu_score": 3}, None)),
    ("Educational score: 5.", ({"llm_edu_score": 5}, None)),
    ("Educational score: 3 (points 1, 2 and 3)", ({"llm_edu_score": 3}, None)),
    ("Using the format \"Educational score: <total points>\":\nEducational score: 2", ({"llm_edu_score": 2}, None)),
    ("Educational score: 4\n\nEducational score: 4", ({"llm_edu_score": 4}, None)),
    ("Educational score: 6", (None, "rating.out_of_range")),
    ("Educational score: -1", (None, "rating.out_of_range")),
    ("Educational score: 2.5", (None, "rating.out_of_range")),
    ("Educational score: 3/10", (None, "rating.out_of_range")),
    ("The page is an advert with a few facts. I would give it 1 point.", (None, "rating.missing")),
    ("Score: 2", (None, "rating.missing")),
    ("Educational score:\n3", (None, "rating.missing")),
    ("", (None, "rating.missing")),
    ("Educational score: 2\nOn reflection the exercises count.\nEducational score: 4", (None, "rating.ambiguous")),
    ("Educational score: 3-4", (None, "rating.ambiguous")),
    ("Educational score: 3 or 4", (None, "rating.ambiguous")),
    ("Educational score: 1+1+1 = 3", (None, "rating.ambiguous")),
    ("Educational score: 3\nEducational score: 7", (None, "rating.ambiguous")),
])
def test_educational_score_answers(answer, expected):
    assert parse("fineweb_edu_rating", answer) == expected


@pytest.mark.parametrize("answer, expected", [
    (dataman_answer(), (all_fours(), None)),
    (dataman_answer({"Accuracy": "5", "Sensitivity": "1"}, overall="3", domain="D"),
     (all_fours(3, "Education") | {"dataman_accuracy": 5, "dataman_sensitivity": 1}, None)),
    (dataman_answer(domain="[H]"), (all_fours(domain="Coding"), None)),
    (dataman_answer(domain="L (Retail E-commerce)"), (all_fours(domain="Retail E-commerce"), None)),
    (dataman_answer(domain="Other"), (all_fours(domain="Other"), None)),
    ("\n".join(f"[{i}] **{c}**: {4}/5" for i, c in enumerate(DATAMAN_CRITERIA, 1))
     + "\n[14] **Overall Score**: 4/5\n**Domain Type:** E", (all_fours(), None)),
    ("Accuracy: the text has few errors.\n" + dataman_answer(), (all_fours(), None)),
    ("\n".join(f"{i}.{c}: 4" for i, c in enumerate(DATAMAN_CRITERIA, 1)) + "\n- Overall: 4\n- Domain: E.",
     (all_fours(), None)),
    (dataman_answer({"Coherence": None}), (None, "rating.incomplete")),
    (dataman_answer(domain=None), (None, "rating.incomplete")),
    (dataman_answer(overall="") + "\nOverall score pending", (None, "rating.incomplete")),
    (dataman_answer({"Originality": "6"}), (None, "rating.out_of_range")),
    (dataman_answer({"Topic Focus": "0"}), (None, "rating.out_of_range")),
    (dataman_answer(overall="4.5"), (None, "rating.out_of_range")),
    (dataman_answer({"Creativity": "2-3"}), (None, "rating.ambiguous")),
    ("Creativity: 2\n" + dataman_answer(), (None, "rating.ambiguous")),
    (dataman_answer(domain="P"), (None, "rating.bad_domain")),
    (dataman_answer(domain="Science"), (None, "rating.bad_domain")),
    (dataman_answer(domain="E (Medicine)"), (None, "rating.bad_domain")),
    (dataman_answer(domain="E or H"), (None, "rating.bad_domain")),
    (dataman_answer({"Accuracy": "9"}, domain=None), (None, "rating.incomplete")),
    ("A fine text about bridges, I rate it 4 of 5.", (None, "rating.missing")),
])
def test_dataman_answers(answer, expected):
    assert parse("dataman_rating", answer) == expected


def test_results_become_a_table_with_nulls_and_reasons():
    edu = to_table("fineweb_edu_rating", [parse("fineweb_edu_rating", a) for a in
                                          ("Educational score: 3", "Educational score: 9", "no score")])
    assert edu.schema == pa.schema([("llm_edu_score", pa.int8()), ("rating_reason", pa.string())])
    assert edu.to_pydict() == {"llm_edu_score": [3, None, None],
                               "rating_reason": [None, "rating.out_of_range", "rating.missing"]}
    dataman = to_table("dataman_rating", [parse("dataman_rating", dataman_answer()),
                                          parse("dataman_rating", dataman_answer(domain="Z"))])
    assert dataman.schema == schema("dataman_rating")
    assert dataman.column_names == CRITERIA_COLUMNS + ["dataman_overall", "dataman_domain", "rating_reason"]
    assert [dataman.schema.field(c).type for c, _ in COLUMNS["dataman_rating"]] == [pa.int8()] * 14 + [pa.string()]
    assert dataman.to_pylist() == [all_fours() | {"rating_reason": None},
                                   dict.fromkeys(dataman.column_names) | {"rating_reason": "rating.bad_domain"}]
    assert to_table("dataman_rating", []).schema == schema("dataman_rating")


def test_unknown_kinds_fail_clearly():
    with pytest.raises(ValueError, match="unknown rating kind 'qurating'; known: fineweb_edu_rating, dataman_rating"):
        parse("qurating", "Educational score: 3")
