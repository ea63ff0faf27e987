"""REWIRE guided rewriting (Nguyen et al. 2025, "Recycling the Web"): keep only the improved text.

The prompt (``prompts/rewire.yaml``) asks the model to reason as the best expert for the draft's task
between ``<thinking starts>`` and ``<thinking ends>``, then to write an improved, not shorter, version
between ``<improved response starts>`` and ``<improved response ends>`` (the paper's tags). Model
output is data: it is only matched, never evaluated. Tags are matched case-insensitively, with any
run of spaces or underscores between their words. The rules, in order:

1. The thinking is removed first, so a tag it mentions can never select text: everything up to the
   last ``<thinking ends>`` goes, and so does everything from a ``<thinking starts>`` left open after
   it (a thinking that is never closed hides the rest of the answer).
2. In what is left there must be one start tag, then one end tag: no start tag gives
   ``synth.no_tags``; one start tag and no end tag gives ``synth.truncated`` (the answer stopped,
   at max_tokens or early, before the improved text was closed); any other count or order (repeated,
   nested or reversed spans) gives ``synth.no_tags``, since no one span can be trusted.
3. The span, with a chat preamble stripped, is the text; nothing outside it is kept. An empty span
   gives ``synth.empty``.
"""

from __future__ import annotations

import re

from operators.llm.outputs import strip_preamble


def _tag(*words: str) -> re.Pattern[str]:
    return re.compile(r"<\s*" + r"[\s_]+".join(words) + r"\s*>", re.IGNORECASE)


THINKING_START = _tag("thinking", "starts")
THINKING_END = _tag("thinking", "ends")
IMPROVED_START = _tag("improved", "response", "starts")
IMPROVED_END = _tag("improved", "response", "ends")


def _without_thinking(answer: str) -> str:
    ends = list(THINKING_END.finditer(answer))
    rest = answer[ends[-1].end():] if ends else answer
    opened = THINKING_START.search(rest)
    return rest[:opened.start()] if opened else rest


def extract_improved(answer: str) -> tuple[str | None, str | None]:
    """``(improved text, None)``, or ``(None, reason)`` with reason ``synth.no_tags``,
    ``synth.truncated`` or ``synth.empty`` (see the module's rules)."""
    rest = _without_thinking(answer or "")
    starts, ends = list(IMPROVED_START.finditer(rest)), list(IMPROVED_END.finditer(rest))
    if not starts:
        return None, "synth.no_tags"
    if len(starts) == 1 and not ends:
        return None, "synth.truncated"
    if len(starts) != 1 or len(ends) != 1 or ends[0].start() < starts[0].end():
        return None, "synth.no_tags"
    text = strip_preamble(rest[starts[0].end():ends[0].start()])
    return (text, None) if text else (None, "synth.empty")
