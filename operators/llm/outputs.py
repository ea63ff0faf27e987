"""Model output handling: strip chat preambles, re-join chunks, and validate by reason.

Model output is data: it is only ever measured and stored, never evaluated.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from operators.dedup.minhash import jaccard, shingle_sets
from operators.filters.languages import normalise

_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok)\b[^\n]*?[.!:]\s*)?"
    r"(?:here(?:'s| is| are)|below is|the following is)\b[^\n]*?:[ \t]*\n+", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:rewritten|paraphrased|rephrased|simplified) (?:text|version)\s*:[ \t]*\n*", re.IGNORECASE)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry,|i cannot|i can(?:no|')t|i'?m (?:not able|unable)|i am (?:not able|unable)|"
    r"as an ai\b)", re.IGNORECASE)


def strip_preamble(text: str) -> str:
    """Remove a leading "Here is a paraphrased version:"-style line or a "Rewritten text:" label."""
    return _LABEL.sub("", _PREAMBLE.sub("", text, count=1), count=1).strip()


def assemble(chunks: list[tuple[int, str]]) -> str:
    """Generated chunks ``(index, text)`` in any order -> one text, in chunk order, as paragraphs."""
    return "\n\n".join(t.strip() for _, t in sorted(chunks) if t.strip())


def input_shingles(inputs: list[str]) -> list[np.ndarray]:
    """The word 5-gram sets ``validate`` compares outputs with, one per input (each distinct input hashed once)."""
    unique = list(dict.fromkeys(inputs))
    sets = dict(zip(unique, shingle_sets(pa.array(unique, pa.string()), 5), strict=True))
    return [sets[text] for text in inputs]


def validate(outputs: list[str], inputs: list[str], truncated: list[bool], ratio: tuple[float, float],
             copy_jaccard: float, languages: list[str | None] | None = None,
             expected: list[str | None] | None = None, in_sets: list[np.ndarray] | None = None) -> list[str | None]:
    """The first failing rule per output (``None`` = valid), in order:
    ``empty``, ``truncated`` (stopped at max_tokens), ``refusal``, ``wrong_language`` (codes compared as
    FineWeb2 writes them, so ``en`` and ``eng_Latn`` agree),
    ``length_ratio`` (characters out / in outside ``ratio``), ``copy`` (word 5-gram Jaccard with
    the input at least ``copy_jaccard``). ``in_sets``: the inputs' :func:`input_shingles`, when known.
    """
    n = len(outputs)
    lengths_out = np.array([len(o) for o in outputs], dtype=float)
    lengths_in = np.maximum(np.array([len(i) for i in inputs], dtype=float), 1)
    ratios = lengths_out / lengths_in
    out_sets = shingle_sets(pa.array(outputs, pa.string()), 5)
    in_sets = input_shingles(inputs) if in_sets is None else in_sets
    rules = [
        ("empty", lengths_out == 0),
        ("truncated", np.array(truncated, dtype=bool)),
        ("refusal", np.array([bool(_REFUSAL.match(o)) for o in outputs], dtype=bool)),
        ("wrong_language", np.array([bool(e and got and normalise(got) != normalise(e)) for got, e in
                                     zip(languages or [None] * n, expected or [None] * n, strict=True)])),
        ("length_ratio", (ratios < ratio[0]) | (ratios > ratio[1])),
        ("copy", np.array([jaccard(a, b) >= copy_jaccard if len(a) else False
                           for a, b in zip(out_sets, in_sets, strict=True)], dtype=bool)),
    ]
    reasons: list[str | None] = [None] * n
    for rule, failed in rules:
        for i in np.flatnonzero(failed):
            reasons[i] = reasons[i] or rule
    return reasons
