"""C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", §2.2; TFDS ``c4_utils``).

Line cleaning keeps lines that end in terminal punctuation (``filter_no_terminal_punct``; FineWeb
ran C4 with this off), have at least ``min_words_per_line`` words, no word over
``max_word_length`` characters and no "javascript" or cookie/terms-of-use phrase; Wikipedia-style
citations are removed. A document is rejected if a kept line says "lorem ipsum" or has a curly
bracket, or if the kept lines hold fewer than ``min_num_sentences`` sentences. Kept documents get
the cleaned text. ``-1`` disables a count threshold. The bad-words list is not applied here.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Filter, set_column
from operators.filters.text import sentence_count

_citation = re.compile(r"\[\d*]|\[edit]|\[citation needed]").sub
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_policy = re.compile("|".join(map(re.escape, POLICY_PHRASES))).search


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class C4(Filter):
    """C4 line cleaning and document rules."""

    name = "c4"
    Params = Params
    adds = {
        "c4_lines_removed": pa.int64(),
        "c4_sentences": pa.int64(),
        "c4_lorem_ipsum": pa.bool_(),
        "c4_curly_bracket": pa.bool_(),
    }


    def clean(self, text: str) -> tuple[list[str], int, bool, bool]:
        """Kept lines, sentences in them, and whether a kept line has "lorem ipsum" / a curly bracket."""
        p = self.p
        kept: list[str] = []
        sentences, lorem, curly = 0, False, False
        for line in text.splitlines():
            line = line.strip()
            tokens = line.split()
            n_words = len(tokens)
            if p.max_word_length != -1 and tokens and max(map(len, tokens)) > p.max_word_length:
                continue
            if p.remove_citations and "[" in line:
                line = _citation("", line)
            if p.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                continue
            if n_words < p.min_words_per_line:
                continue
            lower = line.lower()
            lorem = lorem or "lorem ipsum" in lower
            if p.filter_javascript and "javascript" in lower:
                continue
            curly = curly or "{" in line
            if p.filter_policy and _policy(lower):
                continue
            sentences += sentence_count(line)
            kept.append(line)
        return kept, sentences, lorem, curly

    def signals(self, batch: pa.Table) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in [*self.adds, "cleaned"]}
        for text in batch.column("text").to_pylist():
            text = text or ""
            kept, sentences, lorem, curly = self.clean(text)
            out["cleaned"].append("\n".join(kept).strip())
            out["c4_lines_removed"].append(len(text.splitlines()) - len(kept))
            out["c4_sentences"].append(sentences)
            out["c4_lorem_ipsum"].append(lorem)
            out["c4_curly_bracket"].append(curly)
        return out

    def rules(self, s: dict[str, np.ndarray]):
        if self.p.filter_lorem_ipsum:
            yield "lorem_ipsum", s["c4_lorem_ipsum"]
        if self.p.filter_curly_bracket:
            yield "curly_bracket", s["c4_curly_bracket"]
        yield "too_few_sentences", s["c4_sentences"] < self.p.min_num_sentences

    def transform(self, batch: pa.Table, signals: dict, failed: np.ndarray) -> pa.Table:
        texts = batch.column("text").to_pylist()
        cleaned = [old if bad else new for old, new, bad in zip(texts, signals["cleaned"], failed, strict=True)]
        return set_column(batch, "text", pa.array(cleaned, type=batch.schema.field("text").type))
