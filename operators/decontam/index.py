"""The evaluation sets' n-gram index: sorted numpy uint64 hash pairs and the benchmark of each.

Every word n-gram of every evaluation text (its fields joined, so n-grams across question and answer count
too) is stored as two independent 64-bit hashes (:mod:`operators.decontam.ngrams`), sorted by the first,
with a uint16 benchmark id; a text with fewer than ``n`` words (but at least ``min_words``, as NeMo Curator)
is stored whole, as one n-gram of its own length. A document's n-grams are looked up with
``np.searchsorted`` on the first hash and confirmed on the second, so a false match needs both to collide:
about (index entries) / 2**128 per n-gram looked up; 1e8 entries against a corpus of 1e13 n-grams expect
3e-18 false matches in all (one 64-bit hash alone: about 50). 18 bytes per entry; an n-gram of several
benchmarks is kept once, for the first of them in the recipe.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from operators.decontam.ngrams import ngram_hashes
from operators.decontam.words import words

BATCH = 4096  # evaluation texts tokenised at once


@dataclass
class EvalIndex:
    h1: np.ndarray  # sorted
    h2: np.ndarray
    benchmark: np.ndarray  # index into names
    names: list[str]
    n: int
    normalisation: str
    lengths: list[int] = field(default_factory=list)  # n-gram lengths stored: n and shorter whole texts' lengths
    max_run: int = 1  # most entries sharing one first hash

    @classmethod
    def build(cls, evals: list[tuple[str, list[str]]], n: int, normalisation: str,
              min_words: int) -> tuple[EvalIndex, dict]:
        """The index of ``(benchmark, texts)`` pairs, and per benchmark: texts, n-grams, texts indexed whole,
        texts too short to index."""
        parts, stats, lengths = [], {}, {n}
        for bench, (name, texts) in enumerate(evals):
            counts = stats[name] = {"texts": len(texts), "ngrams": 0, "whole": 0, "too_short": 0}
            for i in range(0, len(texts), BATCH):
                w = words(texts[i: i + BATCH], normalisation)
                per_text = np.diff(w.offsets)
                found = [ngram_hashes(w, n)]
                short = (per_text >= min_words) & (per_text < n)
                for length in np.unique(per_text[short]).tolist():
                    found.append(ngram_hashes(w, length, w.offsets[:-1][per_text == length]))
                    lengths.add(length)
                for h1, h2, _ in found:
                    parts.append((h1, h2, np.full(len(h1), bench, np.uint16)))
                counts["ngrams"] += sum(len(f[0]) for f in found)
                counts["whole"] += int(short.sum())
                counts["too_short"] += int((per_text < min_words).sum())
        h1, h2, bench = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, t)
                         for k, t in enumerate((np.uint64, np.uint64, np.uint16)))
        order = np.lexsort((bench, h2, h1))
        h1, h2, bench = h1[order], h2[order], bench[order]
        first = np.ones(len(h1), bool)
        first[1:] = (h1[1:] != h1[:-1]) | (h2[1:] != h2[:-1])
        h1, h2, bench = h1[first], h2[first], bench[first]
        runs = np.diff(np.flatnonzero(np.concatenate([[True], h1[1:] != h1[:-1], [True]])))
        index = cls(h1, h2, bench, [name for name, _ in evals], n, normalisation, sorted(lengths),
                    int(runs.max(initial=1)))
        return index, stats

    def __len__(self) -> int:
        return len(self.h1)

    def find(self, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
        """The entry of each query hash pair, -1 where there is none."""
        found = np.full(len(q1), -1, np.int64)
        if not len(self.h1):
            return found
        position = np.searchsorted(self.h1, q1)
        for k in range(self.max_run):
            at = np.minimum(position + k, len(self.h1) - 1)
            hit = (found < 0) & (position + k < len(self.h1)) & (self.h1[at] == q1) & (self.h2[at] == q2)
            found[hit] = at[hit]
        return found

    def to_bytes(self) -> bytes:
        meta = {"names": self.names, "n": self.n, "normalisation": self.normalisation, "lengths": self.lengths,
                "max_run": self.max_run}
        out = io.BytesIO()
        np.savez(out, h1=self.h1, h2=self.h2, benchmark=self.benchmark,
                 meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EvalIndex:
        with np.load(io.BytesIO(data)) as arrays:
            meta = json.loads(arrays["meta"].tobytes())
            return cls(arrays["h1"], arrays["h2"], arrays["benchmark"], **meta)
