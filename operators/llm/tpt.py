"""TPT thinking augmentation (Wang et al. 2025, "Thinking Augmented Pre-training", arXiv:2509.20186).

The model writes an expert's in-depth thought process about a document (``prompts/tpt.yaml``) and
the training sample is ``[document; thinking]``. As in the paper, the input is the start of the
document up to 2,000 tokens (``tpt_input``; here cut on paragraph, sentence or word boundaries by
``operators.llm.chunking``), the thinking is capped by the caller's sampling ``max_tokens`` (the paper:
8,000) and nothing after ``</think>`` is kept (the final answer mostly repeats the thinking).
Beyond the paper, ``segments`` and ``join_segments`` give long documents one thinking per segment,
interleaved as ``[segment 1; thinking 1; segment 2; thinking 2 ...]``.

Model output is data: it is only cut and stored, never evaluated.
"""

from __future__ import annotations

import re

from operators.llm.chunking import Counter, chunk_text

Wrap = tuple[str, str] | None
_OPEN = re.compile(r"^\s*<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def thinking(answer: str) -> tuple[str | None, str | None]:
    """``(thinking, None)``: the answer without a leading ``<think>`` and from the first ``</think>``
    on; ``(None, "synth.empty")`` when nothing is left."""
    text = _CLOSE.split(_OPEN.sub("", answer or "", count=1), maxsplit=1)[0].strip()
    return (text, None) if text else (None, "synth.empty")


def training_text(document: str, thinking: str, separator: str = "\n\n", wrap: Wrap = ("<think>", "</think>")) -> str:
    """``document``, ``separator``, then ``thinking`` between ``wrap``'s two strings (as is if ``wrap`` is None).

    The paper concatenates ``[d; t]`` without naming a separator or markers; ``<think>`` tags, the
    generating models' own, keep the thinking apart from the text.
    """
    opening, closing = wrap or ("", "")
    return f"{document.strip()}{separator}{opening}{thinking.strip()}{closing}"


def tpt_input(text: str, budget: int, count: Counter) -> str:
    """The start of ``text`` that the model thinks about: its first chunk of at most ``budget`` tokens."""
    return chunk_text(text, budget, count)[0]


def segments(text: str, budget: int, count: Counter) -> list[str]:
    """``text`` in segments of at most ``budget`` tokens, in order, for one thinking each."""
    return chunk_text(text, budget, count)


def join_segments(doc_segments: list[str], thinkings: list[str | None], separator: str = "\n\n",
                  wrap: Wrap = ("<think>", "</think>")) -> str:
    """``[segment; thinking]`` pairs in order, joined by ``separator``; a segment whose thinking is
    None (rejected) stays, without one."""
    return separator.join(segment.strip() if thought is None else training_text(segment, thought, separator, wrap)
                          for segment, thought in zip(doc_segments, thinkings, strict=True))


def added_tokens(thinkings: list[str | None], count: Counter) -> int:
    """Tokens the thinkings add (markers and separators not counted); None entries add none."""
    kept = [t for t in thinkings if t]
    return sum(count(kept)) if kept else 0
