"""Faithfulness of rewrites and rephrasings: the share of a source's numbers and names kept in the output.

A regex heuristic, no NLP model. From the source are taken two sets:

* numbers: digit runs, with an optional decimal part, not glued to a letter or a dot before them
  (``mp3``, ``v1.2`` are not numbers; in ``1.2.3`` only ``1.2`` is); normalised so that a thousands
  separator, a sign, leading zeros and trailing decimal zeros do not matter: ``1,000`` == ``1000``,
  ``3.50`` == ``3.5``, ``3.0`` == ``3``, ``07`` == ``7``. Numbers written as words are not counted.
* names: runs of capitalised words (each of two letters or more; ``I'm`` and the like are not
  names), broken by anything but spaces (``Paris, France`` is two names) and ended by a possessive
  (``Rome's Colosseum`` is ``Rome`` and ``Colosseum``). A run's first word is dropped when it opens
  a sentence (at the start of the text, after ``.``, ``!``, ``?``, ``…`` or a line break), as a
  capital there says nothing: ``The Eiffel Tower`` opening a sentence gives ``Eiffel Tower``, a lone
  ``Paris`` opening one gives nothing, and so does ``Smith`` after ``Dr.`` (an abbreviation's dot
  reads as a sentence end).

A number is kept when the output has the same normalised number; a name when the output has its
words in a row, with the same capitals. The score is kept / found, over both sets, and 1.0 for a
source with no numbers or names.
"""

from __future__ import annotations

import re

import numpy as np

_WORD = r"[^\W\d_]+(?:['’-][^\W\d_]+)*"
# a digit not after a letter, digit, "_" or ".", then 1-3 digits with thousands groups or any digits, and a decimal
# part; the first digit comes before the look back so that a search skips to digits (3x faster than looking first)
_NUM = r"\d(?<![\w.]\d)(?:\d{0,2}(?:,\d{3})+|\d*)(?:\.\d+)?"
_TOKEN = re.compile(rf"(?P<word>{_WORD})|(?P<num>{_NUM})|(?P<stop>[.!?…]|\n)|(?P<other>[^\w\s])")
# the same tokens, a word's possessive left out of its one group (empty for any other token): the word is
# taken lazily up to where it cannot go on, so it ends where the greedy word above ends
_STREAM = re.compile(rf"([^\W\d_]+(?:['’-][^\W\d_]+)*?)(?:['’]s)?(?![^\W\d_]|['’-][^\W\d_])"
                     rf"|{_NUM}|[.!?…\n]|[^\w\s]")
_NUMBER = re.compile(_NUM)  # digits are in no other token, so numbers found alone are the tokens' numbers
_POSSESSIVE = re.compile(r"['’]s$")
_PRONOUN = re.compile(r"I['’](?:m|ll|ve|d)")


def _number(raw: str) -> str:
    whole, _, decimals = raw.replace(",", "").partition(".")
    decimals = decimals.rstrip("0")
    return (whole.lstrip("0") or "0") + (f".{decimals}" if decimals else "")


def _scan(text: str) -> tuple[set[str], set[str], str]:
    """(names, numbers, word stream): the stream is the text's words with ``|`` for anything else."""
    names, numbers, stream, run = set(), set(), [], []
    sentence_start, run_at_start = True, False

    def close_run():
        words = run[1:] if run_at_start else run
        if words:
            names.add(" ".join(words))
        run.clear()

    for m in _TOKEN.finditer(text):
        if m["word"]:
            word = _POSSESSIVE.sub("", m["word"])
            stream.append(word)
            if len(word) > 1 and word[0].isupper() and not _PRONOUN.fullmatch(word):
                run_at_start = run_at_start if run else sentence_start
                run.append(word)
                if word != m["word"]:
                    close_run()
            else:
                close_run()
            sentence_start = False
            continue
        close_run()
        stream.append("|")
        if m["num"]:
            numbers.add(_number(m["num"]))
            sentence_start = False
        elif m["stop"]:
            sentence_start = True
    close_run()
    return names, numbers, f" {' '.join(stream)} "


def _numbers_and_stream(text: str) -> tuple[set[str], str]:
    """:func:`_scan`'s numbers and word stream without its names (all an output is searched for): the same
    values from two ``findall`` calls and one join, without a Python step per token."""
    stream = " ".join([word or "|" for word in _STREAM.findall(text)])
    return {_number(num) for num in _NUMBER.findall(text)}, f" {stream} "


def entities(text: str) -> tuple[set[str], set[str]]:
    """The (names, numbers) of ``text`` that faithfulness looks for."""
    names, numbers, _ = _scan(text or "")
    return names, numbers


def faithfulness(sources: list[str], outputs: list[str]) -> np.ndarray:
    """Per pair, the share of the source's names and numbers found in the output (float32; 1.0 if none)."""
    kept = np.zeros(len(sources), dtype=np.float32)
    found = np.zeros(len(sources), dtype=np.float32)
    # a source rewritten by several prompts is read once: its one-word names, its longer names (as searched for,
    # and their words) and its numbers
    scanned: dict[str, tuple[set[str], list[tuple[str, set[str]]], set[str]]] = {}
    for i, (source, output) in enumerate(zip(sources, outputs, strict=True)):
        if (source or "") not in scanned:
            names, numbers, _ = _scan(source or "")
            scanned[source or ""] = ({name for name in names if " " not in name},
                                     [(f" {name} ", set(name.split())) for name in names if " " in name], numbers)
        single, multiple, numbers = scanned[source or ""]
        out_numbers, out_stream = _numbers_and_stream(output or "")
        words = set(out_stream.split())  # a one-word name is in the stream when it is one of its words
        kept[i] = (len(numbers & out_numbers) + len(single & words)
                   + sum(name in out_stream for name, parts in multiple if parts <= words))
        found[i] = len(single) + len(multiple) + len(numbers)
    return np.divide(kept, found, out=np.ones_like(kept), where=found > 0)


def unfaithful(scores: np.ndarray, threshold: float) -> np.ndarray:
    """True where a score is below ``threshold`` (the caller rejects those as ``synth.unfaithful``)."""
    return np.asarray(scores, dtype=np.float32) < np.float32(threshold)
