"""Curriculum phases: quality ascending by a quality column (unrated first), and a final phase of upsampled
documents. A phase is a number in the top bits of the copy keys (``keys.PHASE_BITS``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.export.keys import PHASE_BITS
from operators.quality.buckets import LABELS

FINAL = (1 << PHASE_BITS) - 1
ORDER = {"quality_label": list(dict.fromkeys(LABELS)), "quality_bucket": list(range(len(LABELS)))}


def names(column: str) -> dict[int, str]:
    """Phase number -> name: 0 ``unrated`` (no or unknown quality), then the column's values low to high, and
    ``final``."""
    return {0: "unrated", **{i + 1: str(v) for i, v in enumerate(ORDER[column])}, FINAL: "final"}


def phase_numbers(values: pa.Array, column: str) -> np.ndarray:
    """Each row's phase from its quality value (0 where null or not a known value)."""
    order = ORDER[column]
    found = pc.index_in(values, value_set=pa.array(order, values.type)).to_numpy(zero_copy_only=False)
    return np.nan_to_num(found.astype(np.float64), nan=-1).astype(np.int64) + 1
