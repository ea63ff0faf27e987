"""Gopher repetition rules (Rae et al. 2021, "Scaling Language Models", §A.1.1 and Table A1).

Duplicate paragraphs (split on blank lines) and lines, the most frequent 2-4-gram and the
duplicated 5-10-grams, each as a fraction of the document's characters. Thresholds are the
published ones; ``None`` (or 0) disables a rule. Empty documents are rejected as ``empty``.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Filter

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
    language_configs: str | None = None


def duplicates(items: list[str]) -> tuple[int, int]:
    """Number and total length of the items that repeat an earlier one: all of them less one of each."""
    distinct = set(items)
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_powers = np.ones(1, dtype=np.uint64)  # _BASE**j, grown on demand
_inverse_powers = np.ones(1, dtype=np.uint64)  # _BASE**-j


def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    global _powers, _inverse_powers
    if len(_powers) < size:
        grown = max(size, 2 * len(_powers))
        _powers, _inverse_powers = _grow(_BASE, grown), _grow(pow(_BASE, -1, 2**64), grown)
    return _powers, _inverse_powers


def _grow(base: int, size: int) -> np.ndarray:
    """base**0 .. base**(size-1) modulo 2**64 (numpy's unsigned products wrap)."""
    return np.concatenate([np.ones(1, dtype=np.uint64), np.cumprod(np.full(size - 1, base, dtype=np.uint64))])


class Grams:
    """The n-grams of a token sequence, joined by ``sep``, as spans of one joined string with exact-content hashes.

    Written by hand because no library hashes every n-gram of a document at once: a polynomial hash of
    the joined string's code points (prefix sums modulo 2**64, numpy) gives each n-gram's hash in O(1),
    vectorised over all n-grams. Equal texts always hash equal, so a hash seen once is a text seen once;
    a repeated hash is checked against the text before it counts, so a collision can never change a result
    (the caller then falls back to comparing the strings).
    """

    def __init__(self, toks: tuple[str, ...], sep: str):
        self.joined, self.n_toks, self.sep = sep.join(toks), len(toks), len(sep)
        lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks)) + len(sep)
        self.starts = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)])
        codes = np.frombuffer(self.joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        powers, inverse = _power_tables(len(codes) + 1)
        self.powers = powers
        self.prefix = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(codes * inverse[: len(codes)])])

    def spans(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start, end and content hash of each n-gram's text in ``joined``."""
        a = self.starts[: self.n_toks - n + 1]
        b = self.starts[n:] - self.sep
        return a, b, (self.prefix[b] - self.prefix[a]) * self.powers[a]

    def text(self, a: int, b: int) -> str:
        return self.joined[a:b]

    def grams(self, n: int) -> list[str]:
        a, b, _ = self.spans(n)
        joined = self.joined
        return [joined[i:j] for i, j in zip(a.tolist(), b.tolist(), strict=True)]


def top_ngram_chars(grams: Grams, n: int) -> int | None:
    """Characters covered by the most frequent n-gram (space-joined), counting every occurrence.

    Ties go to the n-gram seen first, as ``Counter.most_common`` breaks them."""
    if grams.n_toks < n:
        return None
    a, b, hashes = grams.spans(n)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    best = counts.max()
    top = int(np.argmax(counts[inverse] == best))  # the first position of a most frequent hash: its first n-gram
    where = np.flatnonzero(hashes == hashes[top])
    text = grams.text(int(a[top]), int(b[top]))
    if any(grams.text(i, j) != text for i, j in zip(a[where].tolist(), b[where].tolist(), strict=True)):
        gram, count = Counter(grams.grams(n)).most_common(1)[0]  # a hash collision: count the strings
        return len(gram) * count
    return len(text) * int(best)


def dup_ngram_chars(grams: Grams, n: int) -> int:
    """Characters of n-grams (concatenated) repeating an earlier one, skipping past each repeat.

    Only n-grams whose hash occurs more than once can repeat, so the walk visits just those: the others
    are new wherever the walk meets them, and no later n-gram can repeat them."""
    if grams.n_toks < n:
        return 0
    a, b, hashes = grams.spans(n)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    if not len(candidates):
        return 0
    # only the candidates' values reach Python (index i into them; k is the n-gram's position)
    hashes, a, b = hashes[candidates].tolist(), a[candidates].tolist(), b[candidates].tolist()
    text, seen = grams.text, {}
    chars = after = 0
    for i, k in enumerate(candidates.tolist()):
        if k < after:  # inside the n-gram just counted as a repeat: skipped
            continue
        j = seen.get(hashes[i])
        if j is None:
            seen[hashes[i]] = i
        elif text(a[i], b[i]) == text(a[j], b[j]):
            chars += b[i] - a[i]
            after = k + n
        else:
            return _dup_ngram_chars_strings(grams.grams(n), n)  # a hash collision: compare the strings
    return chars


def _dup_ngram_chars_strings(items: list[str], n: int) -> int:
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
    adapted = True
    adds = {
        "gopher_dup_para_frac": pa.float64(),
        "gopher_dup_para_char_frac": pa.float64(),
        "gopher_dup_line_frac": pa.float64(),
        "gopher_dup_line_char_frac": pa.float64(),
        **{f"gopher_top_{n}_gram_char_frac": pa.float64() for n in TOP_NS},
        **{f"gopher_dup_{n}_gram_char_frac": pa.float64() for n in DUP_NS},
    }


    @classmethod
    def language_overrides(cls, config: dict) -> dict:
        """FineWeb2: ``dup_line_frac``, ``top_n_grams`` and ``dup_n_grams`` (lists of ``[n, fraction]``)."""
        out = {"dup_line_frac": config["dup_line_frac"]}
        for kind, pairs in (("top", config["top_n_grams"]), ("dup", config["dup_n_grams"])):
            out.update({f"{kind}_{n}_gram_char_frac": frac for n, frac in pairs})
        return out

    def signals(self, batch: pa.Table) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in self.adds}
        nan = float("nan")
        words = self.words
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
