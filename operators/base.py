"""Operator base classes: the engine-free unit every stage is built from.

An operator maps a ``pyarrow.Table`` batch to a batch. It declares the columns it ``needs`` and
the columns it ``adds`` (with types), so a recipe is checked before any data is read.

A :class:`Filter` subclass writes only its measurements and its rules:

* ``signals(batch)`` returns raw per-document values, one list per declared signal column;
* ``rules(signals)`` yields ``(rule, failed_mask)`` pairs in order, vectorised with numpy.

The base class owns the rest: signal columns, ``filter_reason`` (the first failing rule, as
``<operator>.<rule>``), keeping an earlier reason, and counting.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel


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

    def signals(self, batch: pa.Table) -> dict[str, Iterable]:
        raise NotImplementedError

    def rules(self, signals: dict[str, np.ndarray]) -> Iterable[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def transform(self, batch: pa.Table, signals: dict, failed: np.ndarray) -> pa.Table:
        """Hook for filters that also rewrite the text of kept documents (C4 line cleaning).

        ``signals`` may carry values beyond the declared columns (C4's cleaned text)."""
        return batch

    def __call__(self, batch: pa.Table) -> pa.Table:
        signals = self.signals(batch)
        for name, typ in self.adds.items():
            batch = set_column(batch, name, pa.array(signals[name], type=typ))
        arrays = {name: np.asarray(signals[name]) for name in self.adds}
        reasons = np.full(batch.num_rows, None, dtype=object)
        with np.errstate(invalid="ignore", divide="ignore"):
            for rule, failed in self.rules(arrays):
                reasons[np.asarray(failed, dtype=bool) & (reasons == None)] = f"{self.name}.{rule}"  # noqa: E711
        batch = self.transform(batch, signals, reasons != None)  # noqa: E711
        return add_reasons(batch, reasons)
