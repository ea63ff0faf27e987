"""Peer baseline: datatrove 0.10.1's filters configured as FineWeb2's pipeline configures them per language.

As ``fineweb-2-pipeline.py`` (huggingface/fineweb-2) step 5: GopherRepetitionFilter (paragraph and line-character
rules off; ``dup_line_frac``, ``top_n_grams``, ``dup_n_grams`` from the language's config), FineWebQualityFilter
(``short_line_thr`` 999, ``char_duplicates_ratio`` 0.1; ``line_punct_thr``, ``new_line_ratio`` from the config),
GopherQualityFilter (word-length bounds, ``max_non_alpha_words_ratio``, the config's stop words, at least 2), each
with ``language=`` (its word tokenizer). A language without a config is not run (FineWeb2 has none for it), or
with ``fallback``, run as the fineweb2 recipe runs it: datatrove's defaults (FineWeb's English thresholds) with
the same three FineWeb2 settings and no stop-word rule.
"""

from __future__ import annotations

import time

from operators.filters.languages import CONFIGS, language_config

STEPS = ("gopher_repetition", "fineweb_quality", "gopher_quality")


def filters(language: str, folder: str = CONFIGS, fallback: bool = False) -> list | None:
    """datatrove's three filters for ``language`` (None without a config, unless ``fallback``)."""
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    config = language_config(language, folder)
    if config is None:
        if not fallback:
            return None
        return [GopherRepetitionFilter(language=language, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0),
                FineWebQualityFilter(language=language, short_line_thr=999, char_duplicates_ratio=0.1),
                GopherQualityFilter(language=language, min_stop_words=0)]
    return [
        GopherRepetitionFilter(language=language, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0,
                               dup_line_frac=config["dup_line_frac"], top_n_grams=config["top_n_grams"],
                               dup_n_grams=config["dup_n_grams"]),
        FineWebQualityFilter(language=language, short_line_thr=999, char_duplicates_ratio=0.1,
                             line_punct_thr=config["line_punct_thr"], new_line_ratio=config["new_line_ratio"]),
        GopherQualityFilter(language=language, max_avg_word_length=config["max_avg_word_length"],
                            min_avg_word_length=config["min_avg_word_length"], stop_words=config["stopwords"],
                            max_non_alpha_words_ratio=config["max_non_alpha_words_ratio"], min_stop_words=2),
    ]


def decisions(texts: list[str], languages: list[str]) -> tuple[list[str | None], float]:
    """(the first rejecting step per document, ``None`` when kept, as ``<step>``), seconds) of datatrove's chain,
    one ``filter(doc)`` call per document and filter, as datatrove runs them."""
    from datatrove.data import Document

    chains = {language: filters(language) for language in set(languages)}
    for chain in chains.values():  # loads each tokenizer once, outside the timing
        for f in chain or ():
            f.filter(Document(text="Warm up. The tokenizer loads here.", id="w"))
    out: list[str | None] = []
    start = time.perf_counter()
    for i, (text, language) in enumerate(zip(texts, languages, strict=True)):
        reason = None
        for step, f in zip(STEPS, chains[language] or (), strict=False):
            if f.filter(Document(text=text, id=str(i))) is not True:
                reason = step
                break
        out.append(reason)
    return out, time.perf_counter() - start
