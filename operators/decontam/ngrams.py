"""Hashes of every word n-gram of a batch at once: ``length`` numpy passes over all the batch's words."""

from __future__ import annotations

import numpy as np

from operators.decontam.words import BASES, SALTS, Words
from operators.dedup.minhash import mix64


def starts(w: Words, length: int) -> np.ndarray:
    """The first word of every run of ``length`` consecutive words inside one text."""
    counts = np.diff(w.offsets)
    per_text = np.maximum(counts - length + 1, 0)
    total = int(per_text.sum())
    text = np.repeat(np.arange(len(counts)), per_text)
    before = np.concatenate([[0], np.cumsum(per_text)[:-1]]).astype(np.int64)
    return w.offsets[:-1][text] + np.arange(total) - before[text]


def ngram_hashes(w: Words, length: int, first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first hash, second hash, first word) of every ``length``-gram of the batch (or of those starting at the
    words ``first``); the two hashes are polynomials in the two independent word hashes, the length mixed in."""
    first = starts(w, length) if first is None else first
    out = []
    for which in (0, 1):
        h = np.zeros(len(first), np.uint64)
        with np.errstate(over="ignore"):
            for k in range(length):
                h = h * BASES[which] + w.hashes[which][first + k]
        out.append(mix64(h ^ (SALTS[which] + np.uint64(length))))
    return out[0], out[1], first
