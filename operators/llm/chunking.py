"""Split documents into chunks that fit a prompt's input-token budget, on natural boundaries.

Paragraphs are packed greedily; a paragraph over budget is split into sentences, and a sentence
over budget into word runs. Token counts come from the model's tokenizer, passed in as
``count(list[str]) -> list[int]`` (one batched call per level), so this module has no engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Counter = Callable[[list[str]], list[int]]
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def _split(piece: str, level: int) -> tuple[list[str], str]:
    """Pieces one level finer, and the separator that joins them back."""
    if level == 0:
        return [p for p in re.split(r"\n\s*\n", piece) if p.strip()], "\n\n"
    if level == 1:
        return [p for p in _SENTENCE_END.split(piece) if p], " "
    return piece.split(), " "


def _pack(pieces: list[str], sizes: list[int], budget: int, sep: str) -> list[str]:
    chunks, current, used = [], [], 0
    for piece, size in zip(pieces, sizes, strict=True):
        if current and used + size > budget:
            chunks.append(sep.join(current))
            current, used = [], 0
        current.append(piece)
        used += size
    if current:
        chunks.append(sep.join(current))
    return chunks


def chunk_text(text: str, budget: int, count: Counter, level: int = 0, tokens: int | None = None) -> list[str]:
    """Chunks of ``text`` of at most ``budget`` tokens each (a single word may exceed it), in order.

    A text of several pieces (paragraphs, then sentences, then words) is measured once, as the sum of its
    pieces' counts, which can differ from the joined text's count by a token or so per boundary; budgets
    leave room for that. ``tokens``: ``text``'s count when known (not counted again).
    """
    if tokens is not None and tokens <= budget:
        return [text]
    pieces, sep = _split(text, level)
    if len(pieces) <= 1:
        tokens = count([text])[0] if tokens is None else tokens
        if tokens <= budget or level == 2:
            return [text]
        return chunk_text(text, budget, count, level + 1, tokens)
    # one tokenizer pass over the pieces decides both whether the text fits and where it is cut; a count known
    # from the level above (over budget, or it would have returned) is the whole text's own and wins over the sum
    sizes = count(pieces)
    if tokens is None and sum(sizes) <= budget:
        return [text]
    out: list[str] = []
    run: list[str] = []
    run_sizes: list[int] = []
    for piece, size in zip(pieces, sizes, strict=True):
        if size > budget and level < 2:
            out += _pack(run, run_sizes, budget, sep)
            run, run_sizes = [], []
            out += chunk_text(piece, budget, count, level + 1, size)
        else:
            run.append(piece)
            run_sizes.append(size)
    return out + _pack(run, run_sizes, budget, sep)


def join_chunks(outputs: list[str]) -> str:
    """Re-join generated chunks, in order, as paragraphs."""
    return "\n\n".join(o.strip() for o in outputs if o.strip())
