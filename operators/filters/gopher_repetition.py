"""Gopher repetition rules (Rae et al. 2021, "Scaling Language Models", §A.1.1 and Table A1).

Duplicate paragraphs (split on blank lines) and lines, the most frequent 2-4-gram and the
duplicated 5-10-grams, each as a fraction of the document's characters. Thresholds are the
published ones; ``None`` (or 0) disables a rule. Empty documents are rejected as ``empty``.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import accumulate

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Filter
from operators.filters.text import words

TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)
_paragraphs = re.compile(r"\n{2,}").split
_lines = re.compile(r"\n+").split


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dup_para_frac: float | None = 0.3
    dup_para_char_frac: float | None = 0.2
    dup_line_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    top_2_gram_char_frac: float | None = 0.2
    top_3_gram_char_frac: float | None = 0.18
    top_4_gram_char_frac: float | None = 0.16
    dup_5_gram_char_frac: float | None = 0.15
    dup_6_gram_char_frac: float | None = 0.14
    dup_7_gram_char_frac: float | None = 0.13
    dup_8_gram_char_frac: float | None = 0.12
    dup_9_gram_char_frac: float | None = 0.11
    dup_10_gram_char_frac: float | None = 0.10


def duplicates(items: list[str]) -> tuple[int, int]:
    """Number and total length of the items that repeat an earlier one."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class Grams:
    """The n-grams of a token sequence as slices of one joined string (faster than joining each)."""

    def __init__(self, toks: tuple[str, ...], sep: str):
        self.joined, self.n_toks, self.sep = sep.join(toks), len(toks), len(sep)
        self.ends = list(accumulate((len(t) + self.sep for t in toks), initial=0))

    def grams(self, n: int) -> list[str]:
        joined, ends, sep = self.joined, self.ends, self.sep
        return [joined[ends[i] : ends[i + n] - sep] for i in range(self.n_toks - n + 1)]


def top_ngram_chars(grams: Grams, n: int) -> int | None:
    """Characters covered by the most frequent n-gram (space-joined), counting every occurrence."""
    counts = Counter(grams.grams(n))
    if not counts:
        return None
    gram, count = counts.most_common(1)[0]
    return len(gram) * count


def dup_ngram_chars(grams: Grams, n: int) -> int:
    """Characters of n-grams (concatenated) repeating an earlier one, skipping past each repeat."""
    items = grams.grams(n)
    if len(set(items)) == len(items):
        return 0
    seen: set[str] = set()
    chars = i = 0
    while i < len(items):
        gram = items[i]
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


class GopherRepetition(Filter):
    """Rejects documents dominated by repeated paragraphs, lines or n-grams."""

    name = "gopher_repetition"
    Params = Params
    adds = {
        "gopher_dup_para_frac": pa.float64(),
        "gopher_dup_para_char_frac": pa.float64(),
        "gopher_dup_line_frac": pa.float64(),
        "gopher_dup_line_char_frac": pa.float64(),
        **{f"gopher_top_{n}_gram_char_frac": pa.float64() for n in TOP_NS},
        **{f"gopher_dup_{n}_gram_char_frac": pa.float64() for n in DUP_NS},
    }


    def signals(self, batch: pa.Table) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in self.adds}
        nan = float("nan")
        for text in batch.column("text").to_pylist():
            size = len(text or "")
            if not size:  # every fraction is undefined; the ``empty`` rule rejects the document
                for column in out.values():
                    column.append(nan)
                continue
            for kind, parts in (("para", _paragraphs(text.strip())), ("line", _lines(text))):
                count, chars = duplicates(parts)
                out[f"gopher_dup_{kind}_frac"].append(count / len(parts))
                out[f"gopher_dup_{kind}_char_frac"].append(chars / size)
            toks = words(text)
            spaced, glued = Grams(toks, " "), Grams(toks, "")
            for n in TOP_NS:
                chars = top_ngram_chars(spaced, n)
                out[f"gopher_top_{n}_gram_char_frac"].append(nan if chars is None else chars / size)
            for n in DUP_NS:
                out[f"gopher_dup_{n}_gram_char_frac"].append(dup_ngram_chars(glued, n) / size)
        return out

    def rules(self, s: dict[str, np.ndarray]):
        p = self.p
        yield "empty", np.isnan(s["gopher_dup_para_char_frac"])
        for rule in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
            if getattr(p, rule):
                yield rule, s[f"gopher_{rule}"] > getattr(p, rule)
        for rule in [f"top_{n}_gram" for n in TOP_NS] + [f"dup_{n}_gram" for n in DUP_NS]:
            limit = getattr(p, f"{rule}_char_frac")
            if limit is not None:
                yield rule, s[f"gopher_{rule}_char_frac"] > limit
