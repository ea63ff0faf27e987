"""The words decontamination compares: two normalisations, vectorised over a batch of texts with numpy.

* ``nemo``, as NeMo Curator's task decontamination splits text: lower-cased, ASCII punctuation deleted
  (``don't`` -> ``dont``), split on whitespace.
* ``datatrove``, as datatrove's ``simplify_text`` before its n-gram decontamination: lower-cased, each number
  (digits, with at most one decimal part: ``3.14``) -> ``0``, punctuation -> a space (``don't`` -> ``don t``),
  diacritics removed (NFD, combining marks dropped), split on whitespace. (datatrove then splits with its
  language's word tokenizer; on text without punctuation an English one gives the same words.)

Whitespace is ``str.split``'s. Texts are read as code points (UTF-32), so each word keeps where it starts
and ends in its original string (the span mode cuts there). Each code point is classed once per process,
in a table filled a page at a time as pages turn up. Hand-written: no library tokenises Arrow or numpy
text with character offsets and these exact rules.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass

import numpy as np

from operators.dedup.minhash import mix64

SPACE, CHAR, DROP, DIGIT = 0, 1, 2, 3  # separates words; is hashed; is deleted; a digit (datatrove: numbers)
UNSET = 255
PAGE_BITS = 12
CODE_POINTS = 0x110000
COMPOSITE = CODE_POINTS  # added to a code point whose folded form is several characters: kept whole
ZERO = ord("0")
DECIMAL_MARKS = frozenset(".,\u060c\u066b\u2396\u2397\u2398")  # datatrove's number pattern's decimal separators
# datatrove's punctuation (``datatrove.utils.text.PUNCTUATION``): ASCII punctuation, control characters, and
# these typographic and CJK marks (its fullwidth one is a digit, so a number, first)
DATATROVE_PUNCTUATION = (frozenset(string.punctuation) | frozenset("\u2014\u201d\uff05\uff11\u3008\u3001\u2501\u3010"
                                                                    "\u300c\u300d\uff0c\u3011\uff1b\u201c\u300a\u201e"
                                                                    "\u2019\u2236\u00b4\uff0e\uff08\u2013\uff1f\uff01"
                                                                    "\uff1a\uff5e\u00ab\u3009\u300b\uff09\u3002\u2026"
                                                                    "\u25ba\u00bb")
                         | frozenset(chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), *range(127, 160)]))
NEMO_PUNCTUATION = frozenset(string.punctuation)
BASES = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15 | 1))  # two independent polynomial hashes
SALTS = (np.uint64(0x2545F4914F6CDD1D), np.uint64(0xD6E8FEB86659FD93))
NORMALISATIONS = ("nemo", "datatrove")


def _single(text: str, cp: int) -> int:
    return ord(text) if len(text) == 1 else cp + COMPOSITE


def _nemo(ch: str) -> tuple[int, int]:
    if ch.isspace():
        return SPACE, 0
    if ch in NEMO_PUNCTUATION:
        return DROP, 0
    return CHAR, _single(ch.lower(), ord(ch))


def _datatrove(ch: str) -> tuple[int, int]:
    if unicodedata.category(ch) == "Nd":
        return DIGIT, ZERO
    if ch.isspace() or ch in DATATROVE_PUNCTUATION:
        return SPACE, 0
    folded = "".join(c for c in unicodedata.normalize("NFD", ch.lower()) if unicodedata.category(c) != "Mn")
    return (CHAR, _single(folded, ord(ch))) if folded else (DROP, 0)


class _Table:
    """Kind and folded code of every code point under one normalisation, filled a page at a time."""

    def __init__(self, classify):
        self.classify = classify
        self.kind = np.full(CODE_POINTS, UNSET, np.uint8)
        self.fold = np.zeros(CODE_POINTS, np.uint32)
        self.filled = np.zeros(CODE_POINTS >> PAGE_BITS, bool)

    def lookup(self, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = np.bincount(cps >> PAGE_BITS, minlength=len(self.filled)).astype(bool) & ~self.filled
        for page in np.flatnonzero(wanted):
            for cp in range(int(page) << PAGE_BITS, (int(page) + 1) << PAGE_BITS):
                self.kind[cp], self.fold[cp] = self.classify(chr(cp))
            self.filled[page] = True
        return self.kind[cps], self.fold[cps]


_TABLES = {"nemo": _Table(_nemo), "datatrove": _Table(_datatrove)}
_DECIMAL = np.zeros(CODE_POINTS, bool)
_DECIMAL[[ord(c) for c in DECIMAL_MARKS]] = True


def _previous(mask: np.ndarray) -> np.ndarray:
    return np.concatenate([[False], mask[:-1]])


def _next(mask: np.ndarray) -> np.ndarray:
    return np.concatenate([mask[1:], [False]])


def _numbers(kind: np.ndarray, fold: np.ndarray, decimal: np.ndarray) -> None:
    """datatrove's numbers, in place: each match of ``digits([decimal mark]digits)?``, taken left to right, becomes
    one ``0``. In a chain ``1,000,000`` the marks after the 1st, 3rd ... digit run belong to a number, the
    others stay what they are (punctuation)."""
    digit = kind == DIGIT
    joiner = decimal & _previous(digit) & _next(digit)
    run_start = digit & ~_previous(digit)
    starts = np.flatnonzero(run_start)
    chain_start = ~_previous(joiner)[starts]
    place = np.arange(len(starts)) - np.maximum.accumulate(np.where(chain_start, np.arange(len(starts)), 0))
    run_of = np.cumsum(run_start) - 1
    marks = np.flatnonzero(joiner)
    absorbed = np.zeros_like(digit)
    absorbed[marks] = place[run_of[marks - 1]] % 2 == 0
    number = digit | absorbed
    first = number & ~_previous(number)
    kind[number] = DROP
    kind[first] = CHAR
    fold[first] = ZERO


@dataclass
class Words:
    """The words of a batch of texts: two 64-bit hashes each, where each starts and ends in its text, and the
    folded characters it was hashed from (to show a matched n-gram)."""

    hashes: tuple[np.ndarray, np.ndarray]
    text: np.ndarray  # which text of the batch
    start: np.ndarray  # first character, in the text's own indices
    end: np.ndarray  # one past its last character
    offsets: np.ndarray  # words of text i are offsets[i]:offsets[i + 1]
    chars: np.ndarray  # folded code points of the hashed characters, word after word
    char_offsets: np.ndarray  # word j's are chars[char_offsets[j]:char_offsets[j + 1]]

    def normalised(self, first: int, count: int) -> str:
        """Words ``first`` .. ``first + count - 1`` as normalised text, joined by spaces."""
        codes = self.chars[self.char_offsets[first]: self.char_offsets[first + count]]
        codes = np.where(codes >= COMPOSITE, codes - COMPOSITE, codes)
        text = "".join(map(chr, codes.tolist()))
        cuts = (self.char_offsets[first: first + count + 1] - self.char_offsets[first]).tolist()
        return " ".join(text[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def _hash(codes: np.ndarray, group_starts: np.ndarray, rank: np.ndarray, lengths: np.ndarray, which: int) -> np.ndarray:
    powers = np.full(max(int(lengths.max(initial=0)), 1), BASES[which], np.uint64)
    powers[0] = 1
    with np.errstate(over="ignore"):
        powers = np.cumprod(powers, dtype=np.uint64)
        mixed = mix64(codes.astype(np.uint64) ^ SALTS[which]) * powers[rank]
    summed = np.add.reduceat(mixed, group_starts) if len(group_starts) else np.zeros(0, np.uint64)
    return mix64(summed ^ (lengths.astype(np.uint64) + SALTS[which]))


def words(texts: list[str], normalisation: str) -> Words:
    """The words of ``texts`` (None counts as empty) under ``normalisation`` (``nemo`` or ``datatrove``)."""
    lengths = np.fromiter((len(t or "") for t in texts), np.int64, len(texts))
    text_start = np.concatenate([[0], np.cumsum(lengths + 1)]).astype(np.int64)
    # a newline between texts: whitespace in both normalisations, so no word runs from one text into the next
    cps = np.frombuffer("\n".join(t or "" for t in texts).encode("utf-32-le", "surrogatepass"), np.uint32)
    kind, fold = _TABLES[normalisation].lookup(cps)
    if normalisation == "datatrove":
        _numbers(kind, fold, _DECIMAL[cps])
    solid = kind != SPACE
    run_first = solid & ~_previous(solid)
    run_start, run_end = np.flatnonzero(run_first), np.flatnonzero(solid & ~_next(solid)) + 1
    hashed = np.flatnonzero(kind == CHAR)
    run_of = (np.cumsum(run_first) - 1)[hashed]
    per_run = np.bincount(run_of, minlength=len(run_start))
    keep = per_run > 0  # a run of deleted characters only (a lone "-" under nemo) is no word
    per_word = per_run[keep]
    char_offsets = np.concatenate([[0], np.cumsum(per_word)]).astype(np.int64)
    rank = np.arange(len(hashed)) - np.repeat(char_offsets[:-1], per_word)
    codes = fold[hashed]
    hashes = tuple(_hash(codes, char_offsets[:-1], rank, per_word, which) for which in (0, 1))
    start, end = run_start[keep], run_end[keep]
    text = np.searchsorted(text_start, start, side="right") - 1
    offsets = np.concatenate([[0], np.cumsum(np.bincount(text, minlength=len(texts)))]).astype(np.int64)
    return Words(hashes, text, start - text_start[text], end - text_start[text], offsets, codes, char_offsets)
