"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models", §A.1.1 and Table A1).

Words are spaCy-style tokens (:func:`~operators.filters.text.words`); the word-count and length
rules count only tokens with a character outside :data:`~operators.filters.text.PUNCTUATION`.
A threshold of ``None`` (or 0) disables its rule.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Filter
from operators.filters.text import PUNCTUATION

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = STOP_WORDS
    language_configs: str | None = None


class GopherQuality(Filter):
    """Document length, word length, symbol, bullet, ellipsis, alphabetic and stop-word rules."""

    name = "gopher_quality"
    Params = Params
    adapted = True
    adds = {
        "gopher_word_count": pa.int64(),
        "gopher_mean_word_length": pa.float64(),
        "gopher_hash_ratio": pa.float64(),
        "gopher_ellipsis_ratio": pa.float64(),
        "gopher_bullet_lines_frac": pa.float64(),
        "gopher_ellipsis_lines_frac": pa.float64(),
        "gopher_alpha_words_frac": pa.float64(),
        "gopher_stop_words": pa.int64(),
    }


    @classmethod
    def language_overrides(cls, config: dict) -> dict:
        """FineWeb2: word-length bounds, the alphabetic-word share (its ``max_non_alpha_words_ratio`` is a
        minimum share of words with a letter), and the language's stop words."""
        return {"min_avg_word_length": config["min_avg_word_length"],
                "max_avg_word_length": config["max_avg_word_length"],
                "min_alpha_words_ratio": config["max_non_alpha_words_ratio"],
                "stop_words": tuple(config["stopwords"])}

    @classmethod
    def fallback_overrides(cls) -> dict:
        """No stop-word rule: the recipe's list is of another language."""
        return {"min_stop_words": None}

    def signals(self, batch: pa.Table) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in self.adds}
        words = self.words
        stop = frozenset(self.p.stop_words)
        nan = float("nan")
        for text in batch.column("text").to_pylist():
            text = text or ""
            toks = words(text)
            n = len(toks)
            kept = chars = alpha = 0
            for w, count in Counter(toks).items():  # each distinct token looked at once
                if not PUNCTUATION.issuperset(w):
                    kept += count
                    chars += count * len(w)
                if w.isalpha() or any(c.isalpha() for c in w):
                    alpha += count
            lines = text.splitlines()
            out["gopher_word_count"].append(kept)
            out["gopher_mean_word_length"].append(chars / kept if kept else nan)
            out["gopher_hash_ratio"].append(text.count("#") / n if n else nan)
            out["gopher_ellipsis_ratio"].append((text.count("...") + text.count("…")) / n if n else nan)
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
            ellipses = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            out["gopher_bullet_lines_frac"].append(bullets / len(lines) if lines else nan)
            out["gopher_ellipsis_lines_frac"].append(ellipses / len(lines) if lines else nan)
            out["gopher_alpha_words_frac"].append(alpha / n if n else nan)
            out["gopher_stop_words"].append(len(stop.intersection(toks)))
        return out

    def rules(self, s: dict[str, np.ndarray]):
        p = self.p
        count, length = s["gopher_word_count"], s["gopher_mean_word_length"]
        if p.min_doc_words:
            yield "word_count", count < p.min_doc_words
        if p.max_doc_words:
            yield "word_count", count > p.max_doc_words
        if p.min_avg_word_length:
            yield "mean_word_length", length < p.min_avg_word_length
        if p.max_avg_word_length:
            yield "mean_word_length", length > p.max_avg_word_length
        if p.max_symbol_word_ratio:
            yield "hash_ratio", s["gopher_hash_ratio"] > p.max_symbol_word_ratio
            yield "ellipsis_ratio", s["gopher_ellipsis_ratio"] > p.max_symbol_word_ratio
        if p.max_bullet_lines_ratio:
            yield "bullet_lines", s["gopher_bullet_lines_frac"] > p.max_bullet_lines_ratio
        if p.max_ellipsis_lines_ratio:
            yield "ellipsis_lines", s["gopher_ellipsis_lines_frac"] > p.max_ellipsis_lines_ratio
        if p.min_alpha_words_ratio:
            yield "alpha_words", s["gopher_alpha_words_frac"] < p.min_alpha_words_ratio
        if p.min_stop_words:
            yield "stop_words", s["gopher_stop_words"] < p.min_stop_words
