"""Run a chain of operators over batches, splitting kept from rejected rows and counting.

``filter`` mode moves a row to the rejected side as soon as an operator gives it a
``filter_reason``. ``annotate`` mode keeps every document and only records the first reason;
rows with no text (failed extraction) still go to the rejected side, as there is nothing to score.
Once rows carry a ``language``, documents kept and dropped (by reason) are also counted per language.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator
from operators.filters.word_tokenizers import clear_caches


class OperatorStats:
    """Counts of one operator: rows in/out, reasons, text bytes seen, seconds."""

    def __init__(self):
        self.rows_in = self.rows_out = self.bytes_in = 0
        self.seconds = 0.0
        self.reasons: Counter = Counter()
        self.counters: dict[str, Counter] = defaultdict(Counter)

    def as_dict(self) -> dict:
        out = {"in": self.rows_in, "out": self.rows_out, "dropped": dict(sorted(self.reasons.items())),
               "bytes_in": self.bytes_in, "seconds": round(self.seconds, 4)}
        out.update({name: dict(sorted(counts.items())) for name, counts in sorted(self.counters.items())})
        return out


def _per_language(batch: pa.Table, into: dict[str, Counter], label: str | None = None) -> None:
    """Add ``batch``'s rows per language (``und``: none) to ``into[language][label or its filter reason]``."""
    if not batch.num_rows or "language" not in batch.column_names:
        return
    languages = batch.column("language").to_pylist()
    reasons = batch.column("filter_reason").to_pylist()
    for language, reason in zip(languages, reasons, strict=True):
        into[language or "und"][label or reason or "no_text"] += 1


def _bytes(batch: pa.Table) -> int:
    column = "raw_html" if "raw_html" in batch.column_names else "text"
    total = pc.sum(pc.binary_length(batch.column(column))).as_py()
    return int(total or 0)


class Chain:
    """An ordered list of operators with a mode and per-operator stats."""

    def __init__(self, operators: list[Operator], mode: str = "filter"):
        if mode not in ("filter", "annotate"):
            raise ValueError(f"mode: {mode!r} is not 'filter' or 'annotate'")
        self.operators = operators
        self.mode = mode
        self.stats: dict[str, OperatorStats] = defaultdict(OperatorStats)
        self.languages: dict[str, Counter] = defaultdict(Counter)

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, list[pa.Table]]:
        """Return (kept batch, rejected batches)."""
        clear_caches()  # the filters share one tokenisation of this batch's documents, and only of these
        if "filter_reason" not in batch.column_names:
            batch = batch.append_column("filter_reason", pa.nulls(batch.num_rows, pa.string()))
        rejected = []
        has_text = False
        for op in self.operators:
            has_text = has_text or "text" in op.adds
            stats = self.stats[op.name]
            stats.rows_in += batch.num_rows
            if batch.num_rows:
                stats.bytes_in += _bytes(batch)
                start = time.perf_counter()
                before = pc.is_null(batch.column("filter_reason"))
                batch = op(batch)
                stats.seconds += time.perf_counter() - start
                for name, counts in op.counters().items():
                    stats.counters[name].update(counts)
                new = pc.and_(before, pc.is_valid(batch.column("filter_reason")))
                stats.reasons.update(pc.filter(batch.column("filter_reason"), new).to_pylist())
                if self.mode == "filter":
                    drop = pc.is_valid(batch.column("filter_reason"))
                else:
                    drop = pc.is_null(batch.column("text")) if has_text else pa.repeat(False, batch.num_rows)
                if pc.any(drop).as_py():
                    rejected.append(batch.filter(drop))
                    batch = batch.filter(pc.invert(drop))
            stats.rows_out += batch.num_rows
        _per_language(batch, self.languages, "kept")
        for rows in rejected:
            _per_language(rows, self.languages)
        return batch, rejected

    def stats_dict(self) -> dict:
        return {op.name: self.stats[op.name].as_dict() for op in self.operators}

    def languages_dict(self) -> dict:
        """``{language: {"kept": n, <reason>: n}}``."""
        return {language: dict(sorted(counts.items())) for language, counts in sorted(self.languages.items())}
