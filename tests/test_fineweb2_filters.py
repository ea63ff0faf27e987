"""FineWeb2's language-adapted filters: exact signals on hand-made texts in five scripts, and keep/drop agreement
with datatrove's filters configured from the same config files on the real pages' German and Spanish documents."""

from __future__ import annotations

import pyarrow as pa
import pytest

from benchmarks.datatrove_fineweb2 import STEPS, decisions
from jobs.curate.recipe import load_recipe
from operators.filters.language import LanguageFilter
from operators.io.storage import Storage
from operators.pipeline import Chain
from operators.registry import build
from tests.conftest import GERMAN, ROOT, need

RECIPE = load_recipe(str(ROOT / "jobs" / "recipes" / "fineweb2.yaml"))


def scored(texts: list[str], languages: list[str]) -> pa.Table:
    """Every document through the three filters in annotate mode: signals of all, first reason of each."""
    ops = [build(name, RECIPE.operator_params(name), Storage()) for name in STEPS]
    batch, _ = Chain(ops, "annotate")(pa.table({"text": texts, "language": languages}))
    return batch


HAND = {
    "deu_Latn": "Der Hund und die Katze sind im Garten.\nDer Hund ist braun und die Katze ist weiß.",
    "cmn_Hani": "我们今天去北京。\n北京是中国的首都。",
    "jpn_Jpan": "私は東京に住んでいます。\n東京は日本の首都です。",
    "arb_Arab": "ذهب الولد إلى المدرسة في الصباح.\nوكانت المدرسة كبيرة وجميلة.",
    "tha_Thai": "ฉันชอบกินข้าวผัดมาก\nวันนี้อากาศดีมาก",
}


def test_signals_follow_each_languages_tokenizer_and_config():
    batch = scored(list(HAND.values()), list(HAND))
    rows = dict(zip(HAND, batch.to_pylist(), strict=True))
    # tokens: German spaCy 19 (2 of them "."), jieba 11 (2 "。"), Japanese 16 (2 "。"), Arabic 12 (2 "."), Thai 8;
    # the word count leaves the punctuation out
    assert {lang: r["gopher_word_count"] for lang, r in rows.items()} == {
        "deu_Latn": 17, "cmn_Hani": 9, "jpn_Jpan": 14, "arb_Arab": 10, "tha_Thai": 8}
    # German: Der Hund und die Katze sind im Garten / Der Hund ist braun und die Katze ist weiß = 63 letters
    assert rows["deu_Latn"]["gopher_mean_word_length"] == pytest.approx(63 / 17)
    # 我们 今天 去 北京 北京 是 中国 的 首都: 15 characters
    assert rows["cmn_Hani"]["gopher_mean_word_length"] == pytest.approx(15 / 9)
    assert rows["deu_Latn"]["gopher_alpha_words_frac"] == pytest.approx(17 / 19)
    assert rows["deu_Latn"]["fineweb_list_ratio"] == pytest.approx(1 / 19)  # one newline, 19 tokens
    # each language's own stop words, case-sensitive as in datatrove: German und, die, im ("Der" is not "der")
    assert {lang: r["gopher_stop_words"] for lang, r in rows.items()} == {
        "deu_Latn": 3, "cmn_Hani": 2, "jpn_Jpan": 4, "arb_Arab": 2, "tha_Thai": 0}
    assert rows["tha_Thai"]["fineweb_line_punct_ratio"] == 0.0  # tha_Thai's line_punct_thr is -1: never fires
    # "Der Hund" twice: 16 of the text's characters, over deu_Latn's 0.169 (FineWeb's English 0.2 would keep it)
    assert rows["deu_Latn"]["gopher_top_2_gram_char_frac"] == pytest.approx(16 / len(HAND["deu_Latn"]))
    assert 0.169 < 16 / len(HAND["deu_Latn"]) < 0.2
    assert {lang: r["filter_reason"] for lang, r in rows.items()} == {
        "deu_Latn": "gopher_repetition.top_2_gram", "cmn_Hani": "gopher_repetition.top_2_gram",
        "jpn_Jpan": "gopher_repetition.top_3_gram", "arb_Arab": "gopher_repetition.top_3_gram",
        "tha_Thai": "gopher_repetition.top_3_gram"}


def test_a_language_without_a_config_keeps_the_recipes_parameters_and_is_counted():
    ops = [build(name, RECIPE.operator_params(name), Storage()) for name in STEPS]
    c = Chain(ops, "annotate")
    german = " ".join(GERMAN)
    batch, _ = c(pa.table({"text": [HAND["deu_Latn"], german], "language": ["deu_Latn", "xyz_Latn"]}))
    assert c.stats_dict()["gopher_quality"]["fallback_languages"] == {"xyz_Latn": 1}
    assert c.stats_dict()["fineweb_quality"]["fallback_languages"] == {"xyz_Latn": 1}
    # kept: no stop-word rule without the language's own list (the English one would drop this German text)
    assert batch.column("filter_reason").to_pylist()[1] is None
    english = build("gopher_quality", {}, Storage())(pa.table({"text": [german]}))
    assert english.column("filter_reason").to_pylist() == ["gopher_quality.stop_words"]


@pytest.fixture(scope="module")
def german_and_spanish(real_texts):
    texts = [t for t in real_texts if t.strip()]
    languages = LanguageFilter(languages=[], threshold=0.0)(pa.table({"text": texts})).column("language").to_pylist()
    picked = [(t, lang) for t, lang in zip(texts, languages, strict=True) if lang in ("deu_Latn", "spa_Latn")]
    return [t for t, _ in picked], [lang for _, lang in picked]


def test_keep_or_drop_agrees_with_datatrove_on_real_german_and_spanish_pages(german_and_spanish):
    need("datatrove", "compare")
    texts, languages = german_and_spanish
    assert languages.count("deu_Latn") >= 30 and languages.count("spa_Latn") >= 5
    batch = scored(texts, languages)
    ours = [(r or "").split(".")[0] or None for r in batch.column("filter_reason").to_pylist()]
    theirs, _ = decisions(texts, languages)
    agree = sum((a is None) == (b is None) for a, b in zip(ours, theirs, strict=True))
    print(f"\nkeep/drop agreement on {len(texts)} German and Spanish pages: {agree}/{len(texts)}; "
          f"same first step: {sum(a == b for a, b in zip(ours, theirs, strict=True))}")
    assert agree >= 0.99 * len(texts)
    assert sum(a is None for a in ours) > 0 and sum(a is not None for a in ours) > 0


def test_fineweb2s_last_touches_fix_encodings_and_remove_bar_lines():
    """FTFY and the `|`-line clean-up as the recipe configures them: exact texts by hand, and the same texts as
    datatrove's FTFYFormatter and SymbolLinesFormatter(["|"], "\\n") give on every real page holding a `|`."""
    ops = [build(name, RECIPE.operator_params(name), Storage()) for name in ("ftfy", "symbol_lines")]
    texts = ["Menü\n|\n| |\nschÃ¶n &amp; gut\x00", "x | y\n|", "nothing to do\r\nhere", ""]
    batch, _ = Chain(ops, "filter")(pa.table({"text": texts}))
    assert batch.drop_columns(["filter_reason"]).to_pylist() == [
        {"text": "Menü\n\n\nschön & gut", "ftfy_fixed": True, "symbol_lines_removed": 2},
        {"text": "x | y\n\n", "ftfy_fixed": False, "symbol_lines_removed": 1},
        {"text": "nothing to do\r\nhere", "ftfy_fixed": False, "symbol_lines_removed": 0},
        {"text": "", "ftfy_fixed": False, "symbol_lines_removed": 0},
    ]


def test_last_touches_agree_with_datatrove_on_real_pages(real_texts):
    need("datatrove", "compare")
    from datatrove.pipeline.formatters import FTFYFormatter, SymbolLinesFormatter

    barred = [t for t in real_texts if "|" in t]
    assert len(barred) >= 10
    ops = [build(name, RECIPE.operator_params(name), Storage()) for name in ("ftfy", "symbol_lines")]
    ours, _ = Chain(ops, "filter")(pa.table({"text": barred}))
    ftfy, lines = FTFYFormatter(), SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\n")
    assert ours.column("text").to_pylist() == [lines.format(ftfy.format(t)) for t in barred]
    assert sum(ours.column("symbol_lines_removed").to_pylist()) > 0
