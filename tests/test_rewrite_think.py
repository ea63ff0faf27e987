"""REWIRE rewriting, faithfulness and TPT thinking augmentation, on hand-written model answers."""

from __future__ import annotations

import numpy as np
import pytest

from operators.llm.faithfulness import _numbers_and_stream, _scan, entities, faithfulness, unfaithful
from operators.llm.prompts import Prompt, load_prompt
from operators.llm.rewire import IMPROVED_END, IMPROVED_START, THINKING_END, THINKING_START, extract_improved
from operators.llm.tpt import added_tokens, join_segments, segments, thinking, tpt_input, training_text
from tests.test_llm_text import words

PLAN = "<thinking starts>\nSECRET PLAN: the draft explains a bridge; add its date.\n<thinking ends>\n"
BETTER = "The old bridge, built in 1820, crosses the river near the mill."
DOC = "A b c d.\n\nE f g.\n\nH i."
START, END = "<improved response starts>", "<improved response ends>"

REWIRE_ANSWERS = [
    (PLAN + f"{START}\n{BETTER}\n{END}", (BETTER, None)),
    (PLAN + f"{START}{BETTER}{END}\nNote: I fixed the grammar.", (BETTER, None)),
    (f"<Thinking Starts>plan<THINKING ENDS>\n\n<Improved  Response\nStarts>\n\n  {BETTER}  \n\n"
     "< improved_response_ends >", (BETTER, None)),
    (f"{START}Here is the improved response:\n{BETTER}{END}", (BETTER, None)),
    (f"I will write the draft between {START} and {END}.\n<thinking ends>\n{START}{BETTER}{END}", (BETTER, None)),
    (f"<thinking starts>Like this: {START}Fake.{END} then more plan.<thinking ends>{START}{BETTER}{END}",
     (BETTER, None)),
    (BETTER, (None, "synth.no_tags")),
    ("", (None, "synth.no_tags")),
    (PLAN, (None, "synth.no_tags")),
    (PLAN + f"{BETTER}\n{END}", (None, "synth.no_tags")),
    (f"<thinking starts>Like this: {START}Fake.{END}<thinking ends>", (None, "synth.no_tags")),
    (f"<thinking starts>plan\n{START}{BETTER}{END}", (None, "synth.no_tags")),
    (PLAN + f"{START}The old bridge, built in", (None, "synth.truncated")),
    (PLAN + f"{START}A.{START}B.{END}{END}", (None, "synth.no_tags")),
    (PLAN + f"{START}A.{START}B.{END}", (None, "synth.no_tags")),
    (PLAN + f"{START}A.{END}\n{START}B.{END}", (None, "synth.no_tags")),
    (PLAN + f"{END}A.{START}", (None, "synth.no_tags")),
    (PLAN + f"{START}\n \n{END}", (None, "synth.empty")),
]


@pytest.mark.parametrize("answer, expected", REWIRE_ANSWERS)
def test_rewire_keeps_only_one_well_formed_improved_span(answer, expected):
    assert extract_improved(answer) == expected


def test_rewire_thinking_never_reaches_the_output():
    texts = [text for text, _ in map(extract_improved, [a for a, _ in REWIRE_ANSWERS]) if text]
    assert len(texts) == 6
    assert not any(word in text for text in texts for word in ("SECRET", "plan", "Fake", "thinking", "<", ">"))


def test_the_rewire_prompt_asks_for_the_tags_the_parser_reads():
    prompt = load_prompt("rewire")
    assert (prompt.family, prompt.max_input_tokens, prompt.length_ratio) == ("rewire", 2000, (0.3, 4.0))
    assert [len(tag.findall(prompt.user)) for tag in (THINKING_START, THINKING_END, IMPROVED_START, IMPROVED_END)] == [
        1, 1, 1, 1]
    assert prompt.user.endswith("Draft:\n{text}")


def test_entities_are_numbers_and_capitalised_names_not_opening_a_sentence():
    names, numbers = entities("The Eiffel Tower in Paris, France opened in 1889. Paris had 2,300,000 people; "
                              "Rome's Colosseum is 48 m tall and I'm told it cost 3.50 lire.\nNew York differs.")
    assert names == {"Eiffel Tower", "Paris", "France", "Rome", "Colosseum", "York"}
    assert numbers == {"1889", "2300000", "48", "3.5"}
    assert entities("Files: mp3, v1.2 and 1.2.3 on 07/03/2024 at -5.0 degrees") == (set(), {"1.2", "7", "3", "2024",
                                                                                           "5"})
    assert entities("") == (set(), set())


def test_faithfulness_is_the_share_of_names_and_numbers_kept():
    source = "The Eiffel Tower in Paris was finished in 1889 and is 330 metres tall."
    pairs = [
        (source, "Finished in 1889, the 330-metre Eiffel Tower stands in Paris."),
        (source, "The Eiffel Tower in Paris was finished long ago and is very tall."),
        (source, "The tower in the capital was finished in 1889 and is 330 metres tall."),
        (source, "The Eiffel Tower in Paris was finished in 1889."),
        (source, "the eiffel tower in paris was finished in 1889 and is 330 metres tall."),
        ("The town had 1,000 people in 2020 and bread cost 3.50 there.",
         "In 2020 bread cost 3.5 in the town of 1000 people."),
        ("the bridge is old and crosses the river near the mill.", ""),
        ("", "Anything at all, 42."),
        (source, ""),
    ]
    scores = faithfulness([s for s, _ in pairs], [o for _, o in pairs])
    assert scores.dtype == np.float32
    assert scores.tolist() == [1.0, 0.5, 0.5, 0.75, 0.5, 1.0, 1.0, 1.0, 0.0]
    assert faithfulness([], []).tolist() == []
    with pytest.raises(ValueError):
        faithfulness([source], [])


def test_an_outputs_numbers_and_word_stream_are_read_as_the_token_by_token_scan_reads_them(real_texts):
    """The output side's two ``findall`` calls give what :func:`_scan` gives token by token: every real page,
    and the cases where a word, a possessive or a number could end elsewhere."""
    hard = ["Rome's Colosseum, James’s car, rock'n'roll's rise, x's'y, it's-not, Rome'sa and well-known 's",
            "mp3 v1.2 1.2.3 07/03/2024 -5.0 1,000,000.50 1234,567 a_b 3rd 3.x .5 x.5 5.",
            "Dr. Smith met I'm and I’ll in São Paulo — Zürich’s Straße!\nNew line… ok? done.", "", "’s 's -"]
    for text in hard + real_texts:
        assert _numbers_and_stream(text) == _scan(text)[1:]


def test_unfaithful_below_the_threshold_only():
    scores = np.array([1.0, 0.5, 0.75, 0.0, 0.6], dtype=np.float32)
    assert unfaithful(scores, 0.6).tolist() == [False, True, False, True, False]
    assert unfaithful(scores, 0.0).tolist() == [False] * 5


@pytest.mark.parametrize("answer, expected", [
    ("<think>\nThe key idea is X.\n</think>\n\nSo the answer is X.", ("The key idea is X.", None)),
    ("The key idea is X.\n</think>\nSummary: X.", ("The key idea is X.", None)),
    ("  <think>The key idea is X, and then", ("The key idea is X, and then", None)),
    ("The key idea is X.", ("The key idea is X.", None)),
    ("Step one.</think>Answer.</think>More.", ("Step one.", None)),
    ("<think>\n\n</think>\nThe answer is X.", (None, "synth.empty")),
    ("", (None, "synth.empty")),
])
def test_tpt_keeps_the_thinking_up_to_its_end_tag(answer, expected):
    assert thinking(answer) == expected


def test_tpt_training_text_separator_and_wrap():
    assert training_text("Doc.\n", " Thought. ") == "Doc.\n\n<think>Thought.</think>"
    assert training_text("Doc.", "Thought.", separator="\n", wrap=None) == "Doc.\nThought."
    assert training_text("Doc.", "Thought.", " ", ("<|begin_of_thought|>\n", "\n<|end_of_thought|>")) == (
        "Doc. <|begin_of_thought|>\nThought.\n<|end_of_thought|>")


def test_tpt_input_is_the_start_of_the_document_within_budget():
    assert tpt_input(DOC, 100, words) == DOC
    assert tpt_input(DOC, 7, words) == "A b c d.\n\nE f g."
    assert tpt_input(DOC, 5, words) == "A b c d."
    assert tpt_input(DOC, 2, words) == "A b"
    assert tpt_input("", 2000, words) == ""


def test_tpt_segments_interleave_with_their_thinkings():
    parts = segments(DOC, 4, words)
    assert parts == ["A b c d.", "E f g.", "H i."]
    assert join_segments(parts, ["T1.", None, "T3."]) == (
        "A b c d.\n\n<think>T1.</think>\n\nE f g.\n\nH i.\n\n<think>T3.</think>")
    assert join_segments(parts, ["T1.", "T2.", "T3."], separator="\n", wrap=None) == (
        "A b c d.\nT1.\nE f g.\nT2.\nH i.\nT3.")
    with pytest.raises(ValueError):
        join_segments(parts, ["T1."])


def test_tpt_added_tokens():
    assert added_tokens(["one two three", None, "four", ""], words) == 4
    assert added_tokens([], words) == 0


def test_tpt_prompt_needs_no_length_ratio_and_others_still_do():
    prompt = load_prompt("tpt")
    assert (prompt.family, prompt.max_input_tokens, prompt.length_ratio) == ("tpt", 2000, None)
    assert prompt.user.startswith("{text}\n=== End of the document ===\n")
    fields = {"name": "x", "version": 1, "max_input_tokens": 10, "system": "s", "user": "{text}"}
    assert Prompt.model_validate(fields | {"family": "tpt"}).length_ratio is None
    with pytest.raises(ValueError, match="length_ratio is required, except for family 'rating' or 'tpt'"):
        Prompt.model_validate(fields | {"family": "rewire"})
