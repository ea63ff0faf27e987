"""The shard plan: contiguous ranges of histogram bins (key >> 48) of about ``shard_tokens`` tokens each, never
across a curriculum phase; the final phase is cut after the bins that reach its target tokens."""

from __future__ import annotations

import numpy as np

from operators.export.keys import BINS, PHASE_BITS


def phase_bins(phase: int) -> range:
    width = BINS >> PHASE_BITS
    return range(phase * width, (phase + 1) * width)


def final_cut(histogram: np.ndarray, phase: int, target: float) -> int:
    """The first bin past the final phase's kept prefix: the fewest whole bins whose tokens reach ``target``."""
    span = phase_bins(phase)
    reached = np.cumsum(histogram[span.start:span.stop]) >= target
    return span.start + (int(np.argmax(reached)) + 1 if reached.any() else len(span))


def shard_ranges(histogram: np.ndarray, shard_tokens: int, phases: list[range]) -> list[dict]:
    """``[{"bins": [lo, hi), "tokens", "phase"}]`` in key order: each phase's bins cut greedily once a shard
    holds ``shard_tokens``; a last piece under half of that joins the shard before it (same phase)."""
    shards: list[dict] = []
    for number, span in enumerate(phases):
        counts = histogram[span.start:span.stop]
        if not counts.any():
            continue
        first = len(shards)
        lo, held = span.start, 0
        for b in np.flatnonzero(counts) + span.start:
            held += int(histogram[b])
            if held >= shard_tokens:
                shards.append({"bins": [lo, int(b) + 1], "tokens": held, "phase": number})
                lo, held = int(b) + 1, 0
        if held:
            if len(shards) > first and held < shard_tokens / 2:
                shards[-1]["bins"][1] = span.stop
                shards[-1]["tokens"] += held
            else:
                shards.append({"bins": [lo, span.stop], "tokens": held, "phase": number})
        else:
            shards[-1]["bins"][1] = span.stop
    return shards
