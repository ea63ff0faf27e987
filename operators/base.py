"""Operator base classes: the engine-free unit every stage is built from.

An operator maps a ``pyarrow.Table`` batch to a batch. It declares the columns it ``needs`` and
the columns it ``adds`` (with types), so a recipe is checked before any data is read.

A :class:`Filter` subclass writes only its measurements and its rules:

* ``signals(batch)`` returns raw per-document values, one list per declared signal column;
* ``rules(signals)`` yields ``(rule, failed_mask)`` pairs in order, vectorised with numpy.

The base class owns the rest: signal columns, ``filter_reason`` (the first failing rule, as
``<operator>.<rule>``), keeping an earlier reason, and counting.

A language-adapted filter (``adapted``, with ``language_configs`` set) scores each document language's rows
apart, with that language's word tokenizer (``self.words``) and the parameters FineWeb2's config for it sets
(``language_overrides``) over the recipe's; a language without a config keeps the recipe's parameters
(``fallback_overrides`` over them) and is counted under ``fallback_languages``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from operators.filters.text import words


class Operator:
    """A named batch transform with declared input and output columns."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    needs: ClassVar[tuple[str, ...]] = ("text",)
    adds: ClassVar[dict[str, pa.DataType]] = {}
    drops: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params):
        """Validate the recipe's parameters for this operator into ``self.p``."""
        self.p = self.Params(**params)

    @classmethod
    def columns(cls, params: dict) -> dict[str, pa.DataType]:
        """The columns a step with ``params`` adds (``adds``, unless a parameter names them)."""
        return cls.adds

    def warm_up(self) -> None:
        """Start what the first batch would otherwise wait for (a child process); workers call it at start."""

    def counters(self) -> dict[str, dict]:
        """Counts gathered since the last call (e.g. ``{"fallback_languages": {"abc_Latn": 3}}``), then reset."""
        return {}

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError


def set_column(batch: pa.Table, name: str, values) -> pa.Table:
    """Replace or append column ``name``."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if name in batch.column_names:
        return batch.set_column(batch.column_names.index(name), name, array)
    return batch.append_column(name, array)


def add_reasons(batch: pa.Table, reasons: np.ndarray) -> pa.Table:
    """Set ``filter_reason`` where it is still null (the first rejecting operator wins)."""
    new = pa.array(reasons, type=pa.string())
    if "filter_reason" in batch.column_names:
        new = pc.coalesce(batch.column("filter_reason").combine_chunks(), new)
    return set_column(batch, "filter_reason", new)


class Filter(Operator):
    """Scores documents and rejects those failing a rule; see the module docstring."""

    adapted: ClassVar[bool] = False  # follows the document's language when ``language_configs`` is set

    def __init__(self, **params):
        super().__init__(**params)
        self.words = words
        self._folder = None
        self._per_language: dict = {}
        self._fallbacks: Counter = Counter()
        if self.adapted and self.p.language_configs:
            from operators.filters.languages import configs_folder

            self._folder = configs_folder(self.p.language_configs)

    @classmethod
    def language_overrides(cls, config: dict) -> dict:
        """The parameters FineWeb2's ``config`` for a language sets."""
        return {}

    @classmethod
    def fallback_overrides(cls) -> dict:
        """The parameters changed for a language without a config."""
        return {}

    def signals(self, batch: pa.Table) -> dict[str, Iterable]:
        raise NotImplementedError

    def rules(self, signals: dict[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def transform(self, batch: pa.Table, signals: dict, failed: np.ndarray) -> pa.Table:
        """Hook for filters that also rewrite the text of kept documents (C4 line cleaning).

        ``signals`` may carry values beyond the declared columns (C4's cleaned text)."""
        return batch

    def counters(self) -> dict[str, dict]:
        out = {"fallback_languages": dict(self._fallbacks)} if self._fallbacks else {}
        self._fallbacks.clear()
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._folder is None:
            return self._apply(batch)
        if "language" not in batch.column_names:
            raise ValueError(f"{self.name}: language_configs needs the language step before it")
        from operators.filters.languages import rows_by_language

        groups = rows_by_language(batch.column("language"))
        parts = []
        for language, rows in groups:
            with self._language(language, len(rows)):
                parts.append(self._apply(batch if len(groups) == 1 else batch.take(rows)))
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts).take(np.argsort(np.concatenate([rows for _, rows in groups])))

    @contextlib.contextmanager
    def _language(self, language: str | None, rows: int):
        """Within: ``self.p`` and ``self.words`` are those of ``language``."""
        if language not in self._per_language:
            from operators.filters.languages import language_config
            from operators.filters.word_tokenizers import word_tokenizer

            config = language_config(language, self._folder) if language else None
            overrides = self.fallback_overrides() if config is None else self.language_overrides(config)
            params = self.Params(**{**self.p.model_dump(), **overrides})
            self._per_language[language] = (params, word_tokenizer(language) if language else words, config is None)
        params, tokenize, fallback = self._per_language[language]
        if fallback:
            self._fallbacks[language] += rows
        recipe, self.p, self.words = self.p, params, tokenize
        try:
            yield
        finally:
            self.p, self.words = recipe, words

    def _apply(self, batch: pa.Table) -> pa.Table:
        signals = self.signals(batch)
        for name, typ in self.adds.items():
            batch = set_column(batch, name, pa.array(signals[name], type=typ))
        arrays = {name: np.asarray(signals[name]) for name, typ in self.adds.items() if not pa.types.is_nested(typ)}
        reasons = np.full(batch.num_rows, None, dtype=object)
        with np.errstate(invalid="ignore", divide="ignore"):
            for rule, failed in self.rules(arrays):
                reasons[np.asarray(failed, dtype=bool) & (reasons == None)] = f"{self.name}.{rule}"  # noqa: E711
        batch = self.transform(batch, signals, reasons != None)  # noqa: E711
        return add_reasons(batch, reasons)
