"""FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets", §3.6).

Over non-blank lines: the share ending in terminal punctuation, the share of short lines, the
share of characters in duplicated lines, and newlines per word (lists). Documents without a
non-blank line are rejected as ``empty``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Filter
from operators.filters.gopher_repetition import duplicates
from operators.filters.text import TERMINAL_PUNCTUATION


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: tuple[str, ...] | None = None  # None: Unicode sentence terminals
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3
    language_configs: str | None = None


class FinewebQuality(Filter):
    """Line punctuation, short-line, duplicated-character and list-like rules."""

    name = "fineweb_quality"
    Params = Params
    adapted = True
    adds = {
        "fineweb_lines": pa.int64(),
        "fineweb_line_punct_ratio": pa.float64(),
        "fineweb_short_line_ratio": pa.float64(),
        "fineweb_char_dup_ratio": pa.float64(),
        "fineweb_list_ratio": pa.float64(),
    }


    @classmethod
    def language_overrides(cls, config: dict) -> dict:
        """FineWeb2: ``line_punct_thr`` (-1: never fires) and ``new_line_ratio``."""
        return {"line_punct_thr": config["line_punct_thr"], "new_line_ratio": config["new_line_ratio"]}

    def signals(self, batch: pa.Table) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in self.adds}
        words = self.words
        stop = tuple(TERMINAL_PUNCTUATION if self.p.stop_chars is None else self.p.stop_chars)
        short, nan = self.p.short_line_length, float("nan")
        for text in batch.column("text").to_pylist():
            text = text or ""
            lines = [line for line in text.split("\n") if line.strip()]
            n = len(lines)
            out["fineweb_lines"].append(n)
            if not n:
                for name in self.adds:
                    if name != "fineweb_lines":
                        out[name].append(nan)
                continue
            out["fineweb_line_punct_ratio"].append(sum(line.endswith(stop) for line in lines) / n)
            out["fineweb_short_line_ratio"].append(sum(len(line) <= short for line in lines) / n)
            out["fineweb_char_dup_ratio"].append(duplicates(lines)[1] / (len(text) - text.count("\n")))
            out["fineweb_list_ratio"].append(text.count("\n") / len(words(text)))
        return out

    def rules(self, s: dict[str, np.ndarray]):
        p = self.p
        punct = s["fineweb_line_punct_ratio"]
        yield "empty", s["fineweb_lines"] == 0
        yield "line_punct_ratio", (punct < p.line_punct_thr) & ~((punct == 0) & p.line_punct_exclude_zero)
        yield "short_line_ratio", s["fineweb_short_line_ratio"] > p.short_line_thr
        yield "char_dup_ratio", s["fineweb_char_dup_ratio"] > p.char_duplicates_ratio
        yield "list_ratio", s["fineweb_list_ratio"] > p.new_line_ratio
