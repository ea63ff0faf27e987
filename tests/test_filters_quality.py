"""Quality filters: exact signals and reasons on small texts."""

from __future__ import annotations

import math
from collections import Counter

import pyarrow as pa
import pydantic
import pytest

from operators.filters.c4 import C4
from operators.filters.fineweb_quality import FinewebQuality
from operators.filters.gopher_quality import GopherQuality
from operators.filters.gopher_repetition import (
    GopherRepetition,
    Grams,
    _dup_ngram_chars_strings,
    dup_ngram_chars,
    top_ngram_chars,
)
from operators.filters.text import PUNCTUATION, TERMINAL_PUNCTUATION, sentence_count, words


def run(op, *texts: str) -> list[dict]:
    return op(pa.table({"text": list(texts)})).to_pylist()


def test_words_follow_spacy_english_rules():
    text = "I don't like U.S. e-mail (it's 10km), see http://example.com/a-b! :) Mr. Smith's"
    assert words(text) == (
        "I",
        "do",
        "n't",
        "like",
        "U.S.",
        "e",
        "-",
        "mail",
        "(",
        "it",
        "'s",
        "10",
        "km",
        ")",
        ",",
        "see",
        "http://example.com/a-b",
        "!",
        ":)",
        "Mr.",
        "Smith",
        "'s",
    )
    assert words(" \n ") == ()


def test_sentence_count_follows_spacy_sentencizer():
    assert sentence_count("One. Two! Three? four") == 4
    assert sentence_count("Wait... what") == 1  # "..." is one token, not a sentence end
    assert sentence_count("Yes.  No") == 2
    assert sentence_count("") == 0
    assert sentence_count("  Lead. \tTab! x") == 3  # whitespace runs are tokens, not punctuation
    assert sentence_count("Hello.) (World") == 2  # punctuation after the end stays in the sentence


def test_punctuation_sets():
    assert {".", "!", "?", "。", "।"} <= TERMINAL_PUNCTUATION and "," not in TERMINAL_PUNCTUATION
    assert {"#", "…", "—", "\x00"} <= PUNCTUATION and not {"\n", "\t", "a"} & PUNCTUATION
    text = pytest.importorskip("datatrove.utils.text")
    assert TERMINAL_PUNCTUATION == text.TERMINAL_PUNCTUATION


def test_gopher_quality():
    rows = run(GopherQuality(min_doc_words=3), "The cat and the dog.\n# # # #", "a b")
    assert rows[0] | {"text": None} == {
        "text": None,
        "gopher_word_count": 5,
        "gopher_mean_word_length": 3.0,
        "gopher_hash_ratio": 0.4,
        "gopher_ellipsis_ratio": 0.0,
        "gopher_bullet_lines_frac": 0.0,
        "gopher_ellipsis_lines_frac": 0.0,
        "gopher_alpha_words_frac": 0.5,
        "gopher_stop_words": 2,
        "filter_reason": "gopher_quality.hash_ratio",
    }
    assert rows[1]["filter_reason"] == "gopher_quality.word_count"
    kept = "The dog and the cat sat with me on the mat.\nIt was good to have them."
    (row,) = run(GopherQuality(min_doc_words=10), kept)
    assert (row["gopher_word_count"], row["gopher_stop_words"], row["filter_reason"]) == (17, 5, None)
    (row,) = run(GopherQuality(min_doc_words=10, min_stop_words=6), kept)
    assert row["filter_reason"] == "gopher_quality.stop_words"


def test_gopher_repetition():
    dup, empty, short = run(GopherRepetition(), "x\n\nx\n\ny", "", "one two three four five six")
    assert dup["gopher_dup_para_frac"] == pytest.approx(1 / 3)
    assert dup["gopher_dup_line_char_frac"] == pytest.approx(1 / 7)
    assert dup["gopher_top_2_gram_char_frac"] == pytest.approx(3 / 7)  # "x x" once, first of the ties
    assert math.isnan(dup["gopher_top_4_gram_char_frac"])  # too few words: rule skipped
    assert dup["filter_reason"] == "gopher_repetition.dup_para_frac"
    assert empty["filter_reason"] == "gopher_repetition.empty"
    assert short["filter_reason"] == "gopher_repetition.top_2_gram"  # 7 of 27 chars
    text = " ".join(f"word{i}" for i in range(80)) + "\n" + " ".join(f"word{i}" for i in range(10))
    (row,) = run(GopherRepetition(), text)
    assert row["gopher_dup_5_gram_char_frac"] == pytest.approx(50 / len(text))
    assert row["filter_reason"] is None


def test_gopher_ngram_hash_collisions_fall_back_to_the_strings():
    """n-grams are counted by content hash; a collision is caught by comparing texts, so results never change.
    Zeroing the prefix sums makes every n-gram's hash collide. Glued 5-grams repeat across different tokens."""
    toks = words("ab c abc a bc ab c a bc abc d e f ab c abc a bc x y z ab c abc a bc ab c")

    def by_strings(sep: str, n: int) -> int | None:
        grams = [sep.join(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        if sep:
            gram, count = Counter(grams).most_common(1)[0]
            return len(gram) * count
        return _dup_ngram_chars_strings(grams, n)

    for sep, fn, n_values in ((" ", top_ngram_chars, (2, 3, 4)), ("", dup_ngram_chars, range(5, 11))):
        for n in n_values:
            collided = Grams(toks, sep)
            collided.prefix[:] = 0
            assert fn(Grams(toks, sep), n) == fn(collided, n) == by_strings(sep, n), (sep, n)
    assert [dup_ngram_chars(Grams(toks, ""), n) for n in (5, 6)] == [27, 11]
    assert top_ngram_chars(Grams(toks, " "), 2) == 5 * len("ab c")


def test_c4_cleans_lines_and_rejects():
    text = (
        "First sentence here. Second one here!\nmenu\nThird line is here. Fourth? Fifth.\n"
        "Please enable javascript now."
    )
    kept, lorem, few = run(C4(), text, "lorem ipsum dolor sit amet.", "a b c d {")
    assert kept == {
        "text": "First sentence here. Second one here!\nThird line is here. Fourth? Fifth.",
        "c4_lines_removed": 2,
        "c4_sentences": 5,
        "c4_lorem_ipsum": False,
        "c4_curly_bracket": False,
        "filter_reason": None,
    }
    assert lorem["filter_reason"] == "c4.lorem_ipsum" and lorem["text"] == "lorem ipsum dolor sit amet."
    assert few["filter_reason"] == "c4.too_few_sentences"
    (row,) = run(C4(filter_no_terminal_punct=False), "a b c d {")
    assert row["c4_curly_bracket"] and row["filter_reason"] == "c4.curly_bracket"
    (row,) = run(C4(min_num_sentences=1), "Cite this [1] and [edit] please.")
    assert row["text"] == "Cite this  and  please." and row["c4_sentences"] == 1


def test_fineweb_quality():
    good, empty, short = run(
        FinewebQuality(),
        "This is a full line of text that ends well.\nAnother long line without a stop at end",
        "\n \n",
        "short\nshort\nshort",
    )
    assert (good["fineweb_line_punct_ratio"], good["fineweb_short_line_ratio"]) == (0.5, 0.0)
    assert good["fineweb_list_ratio"] == pytest.approx(1 / 19) and good["filter_reason"] is None
    assert empty["filter_reason"] == "fineweb_quality.empty"
    assert short["fineweb_char_dup_ratio"] == pytest.approx(10 / 15)
    assert short["filter_reason"] == "fineweb_quality.line_punct_ratio"
    (row,) = run(FinewebQuality(line_punct_exclude_zero=True), "short\nshort\nshort")
    assert row["filter_reason"] == "fineweb_quality.short_line_ratio"


@pytest.mark.parametrize("op", [GopherQuality(), GopherRepetition(), C4(), FinewebQuality()],
                         ids=lambda op: type(op).__name__)
def test_earlier_reason_is_kept(op):
    batch = pa.table({"text": ["", "x\n\nx"], "filter_reason": pa.array(["x.y", None], pa.string())})
    out = op(batch)
    assert out.column("filter_reason").to_pylist()[0] == "x.y"
    assert out.column("filter_reason").to_pylist()[1].startswith(op.name + ".")
    assert set(op.adds) <= set(out.column_names)


def test_params_are_validated():
    assert GopherQuality(min_stop_words=3).p.min_stop_words == 3
    with pytest.raises(pydantic.ValidationError):
        GopherQuality(min_stopwords=3)
    assert C4.Params().filter_no_terminal_punct is True
