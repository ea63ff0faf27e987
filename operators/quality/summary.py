"""Per-shard summaries of quality scores, summed by the driver into ``_stats.json``: score
histograms per classifier and token-weighted bucket shares (also the input of the drift report)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BINS = 20


def token_counts(texts: pa.Array) -> np.ndarray:
    """Whitespace-separated words per text: the weight of a document in token-weighted statistics."""
    words = pc.list_value_length(pc.utf8_split_whitespace(pc.fill_null(texts, "")))
    return words.to_numpy(zero_copy_only=False).astype(np.int64)


def histogram(scores: np.ndarray, low: float, high: float) -> list[int]:
    """Counts of the non-missing scores in ``BINS`` equal bins over [low, high] (outside values clipped)."""
    valid = scores[~np.isnan(scores)]
    counts, _ = np.histogram(np.clip(valid, low, high), bins=BINS, range=(low, high))
    return counts.tolist()


def weighted_counts(values: np.ndarray, weights: np.ndarray, size: int) -> list[int]:
    """Total weight of each value 0..size-1 (negative values, i.e. missing, left out)."""
    keep = values >= 0
    return np.bincount(values[keep].astype(np.int64), weights=weights[keep], minlength=size).astype(np.int64).tolist()


def add(total: dict, part: dict) -> dict:
    """Sum two summaries (nested dicts of lists and numbers)."""
    for key, value in part.items():
        if isinstance(value, dict):
            total[key] = add(total.get(key, {}), value)
        elif isinstance(value, list):
            previous = total.get(key, [0] * len(value))
            total[key] = [a + b for a, b in zip(previous, value, strict=True)]
        else:
            total[key] = total.get(key, 0) + value
    return total


def shares(weights: list[int]) -> list[float]:
    total = sum(weights)
    return [round(w / total, 6) if total else 0.0 for w in weights]


def label_shares(bucket_tokens: list[int], labels) -> dict[str, float]:
    """Token shares of the bucket labels (``labels(bucket) -> name``)."""
    by_label: Counter = Counter()
    for bucket, tokens in enumerate(bucket_tokens):
        by_label[labels(bucket)] += tokens
    total = sum(by_label.values())
    return {name: round(t / total, 6) if total else 0.0 for name, t in sorted(by_label.items())}


def drift_from_counts(bucket_tokens: list[int]) -> dict:
    """A crawl's token shares in the calibration buckets against their 5 % each on the calibration
    sample: the population stability index and the largest deviation (``operators.quality.buckets.drift``
    computed from summed per-shard counts instead of scores)."""
    from operators.quality.buckets import PSI_EPSILON

    counts = np.asarray(bucket_tokens, dtype=np.float64)
    if counts.sum() <= 0:
        return {"shares": [0.0] * len(counts), "psi": None, "max_abs_deviation": None}
    share = counts / counts.sum()
    expected = 1 / len(counts)
    psi = float(np.sum((share - expected) * np.log(np.maximum(share, PSI_EPSILON) / expected)))
    return {"shares": [round(x, 6) for x in share.tolist()], "psi": round(psi, 6),
            "max_abs_deviation": round(float(np.max(np.abs(share - expected))), 6)}
