"""FineWeb2's rehydration: upsample documents by the size of their MinHash duplicate cluster.

After MinHash dedup each surviving document carries the size of the cluster it stood for. FineWeb2
found that clusters of some sizes lose fewer documents to the quality filters than the language as a
whole, and repeats those documents up to ``max_reps`` times. The weights are a step function
``{min_cluster_size: repetitions}``: a document of cluster size ``s`` takes the value of the largest
key <= ``s`` (1 below the smallest key).

``weights_from_distribution`` reproduces every one of the 14,848 shipped ``up_to_{03..10}_reps.json``
tables (1,856 languages x 8) from FineWeb2's per-language distributions. The details this takes:

- the tail bucket (sizes >= ``tail_threshold``, one removal rate) is appended as the last point, with
  ``tail_threshold`` as its size;
- ``w = 1`` where ``rate >= global``, else ``1 + (rate - global) / (min_rate - global) * (max_reps - 1)``
  (this order of float operations: another order flips a rounding at .5 in one table);
- ``np.convolve(w, np.ones(5) / 5, mode="same")`` with the first two and last two points replaced by
  their unsmoothed values. With fewer than 5 points numpy's "same" output is 5 long and shifted, and
  FineWeb2's tables keep that quirk (``nwb_Latn``, ``avn_Latn``, ...), so it is kept here too;
- ``np.round`` (half to even: an unsmoothed 2.5 gives 2, ``chj_Latn`` at 10);
- a key for the first size and for each size whose value differs from the previous size's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

SIMPLE: dict[int, int] = {1: 1, 2: 2, 3: 3, 5: 5, 100: 8, 1000: 1}
"""The fixed rule in FineWeb2's README: x1, x2, x3 (3-4), x5 (5-99), x8 (100-999), x1 (>= 1000)."""

SHIPPED_MAX_REPS = range(3, 11)
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "fineweb2" / "rehydration" / "weights"
TAIL_SHARE = 0.001
"""``distribution`` pools the largest sizes holding at least this share of the documents."""


def _sizes(cluster_sizes) -> np.ndarray:
    """Cluster sizes as int64; null, NaN, 0 and negative sizes become 1 (a document of its own)."""
    s = np.asarray(cluster_sizes, dtype=np.float64).ravel()
    s = np.where(np.isfinite(s) & (s >= 1), s, 1.0)
    return s.astype(np.int64)


def weights_from_distribution(dist: dict, max_reps: int) -> dict[int, int]:
    """FineWeb2's weights ``{min_cluster_size: repetitions}`` from a distribution in its format.

    See the module docstring for the rule. A distribution with no sizes at all gives ``{1: 1}``.
    """
    if max_reps < 1:
        raise ValueError(f"max_reps must be >= 1, got {max_reps}")
    sizes = list(dist.get("cluster_sizes") or [])
    rates = list(dist.get("cluster_removal_rates") or [])
    if dist.get("tail_threshold") is not None:
        sizes.append(dist["tail_threshold"])
        rates.append(dist["tail_removal_rate"])
    if not sizes:
        return {1: 1}
    s = np.asarray(sizes, dtype=np.int64)
    r = np.asarray(rates, dtype=np.float64)
    g = float(dist["global_removal_rate"])
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(r >= g, 1.0, 1 + (r - g) / (r.min() - g) * (max_reps - 1))
    smooth = np.convolve(w, np.ones(5) / 5, mode="same")  # 5 long when len(w) < 5, as in FineWeb2
    smooth[:2] = w[:2]
    smooth[-2:] = w[-2:]
    v = np.round(smooth[: len(w)]).astype(np.int64)
    keep = np.r_[True, v[1:] != v[:-1]]
    return dict(zip(s[keep].tolist(), v[keep].tolist(), strict=True))


def distribution(cluster_sizes: np.ndarray, removed: np.ndarray, tail_threshold: int | None = None,
                 counts: np.ndarray | None = None) -> dict:
    """This run's distribution in FineWeb2's format, from one row per document that reached the filters
    (or per group of ``counts`` documents with that size and outcome, as a Spark aggregate gives them).

    ``cluster_sizes``: each document's MinHash cluster size (null/0/negative count as 1); ``removed``:
    whether a quality filter removed it. Rates are in %. Sizes with no documents are not listed.

    Tail: by default ``tail_threshold`` is the smallest size ``t`` with more than 99.9% of the documents
    at size <= ``t``, i.e. the sizes >= ``t`` hold at least 0.1% of the documents and no larger
    threshold would. Inferred from the reference files, not from FineWeb2's code: in all 143 languages
    where every rate is below 100% (so document counts can be recovered) the tail holds at least 0.1%
    of the documents before filtering (as little as 0.10000% in large languages), and the threshold is
    always above the largest listed size. An explicit
    ``tail_threshold`` with no documents at or above it gets the global removal rate (weight 1).
    No documents: empty lists, ``tail_threshold`` and the rates ``None``.
    """
    s = _sizes(cluster_sizes)
    rm = np.asarray(removed, dtype=bool).ravel()
    if s.shape != rm.shape:
        raise ValueError(f"cluster_sizes ({s.size}) and removed ({rm.size}) differ in length")
    weight = np.ones(s.size, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64).ravel()
    n = int(weight.sum())
    if n == 0:
        return {"cluster_sizes": [], "cluster_removal_rates": [], "cluster_post_filtering_doc_counts": [],
                "tail_threshold": None, "tail_removal_rate": None, "tail_post_filtering_doc_counts": 0,
                "global_removal_rate": None}
    uniq, inverse = np.unique(s, return_inverse=True)
    total = np.bincount(inverse, weights=weight, minlength=uniq.size).astype(np.int64)
    gone = np.bincount(inverse, weights=weight * rm, minlength=uniq.size).astype(np.int64)
    global_rate = 100.0 * int(gone.sum()) / n
    if tail_threshold is None:
        # first size where the documents at or below it exceed 99.9% (integer test: 1000 * cum > 999 * n)
        tail_threshold = int(uniq[np.argmax(np.cumsum(total) * 1000 > 999 * n)])
    head = uniq < tail_threshold
    tail_total, tail_gone = int(total[~head].sum()), int(gone[~head].sum())
    return {
        "cluster_sizes": uniq[head].tolist(),
        "cluster_removal_rates": (100.0 * gone[head] / total[head]).tolist(),
        "cluster_post_filtering_doc_counts": (total[head] - gone[head]).tolist(),
        "tail_threshold": int(tail_threshold),
        "tail_removal_rate": 100.0 * tail_gone / tail_total if tail_total else global_rate,
        "tail_post_filtering_doc_counts": tail_total - tail_gone,
        "global_removal_rate": global_rate,
    }


@lru_cache(maxsize=32)
def _load(max_reps: int, folder: str) -> dict[str, dict[int, int]]:
    with open(Path(folder) / f"up_to_{max_reps:02d}_reps.json", encoding="utf-8") as f:
        raw = json.load(f)
    return {lang: dict(sorted((int(k), int(v)) for k, v in table.items())) for lang, table in raw.items()}


def shipped_weights(max_reps: int, folder: str | None = None) -> dict[str, dict[int, int]]:
    """FineWeb2's precomputed ``{lang: {min_cluster_size: repetitions}}`` for ``max_reps`` in 3..10.

    Read from ``up_to_{max_reps:02d}_reps.json`` in ``folder`` (default: the copy shipped in
    ``operators/fineweb2/rehydration/weights``), keys as ints in ascending order. Cached: do not mutate.
    """
    if max_reps not in SHIPPED_MAX_REPS:
        raise ValueError(f"max_reps must be in {SHIPPED_MAX_REPS.start}..{SHIPPED_MAX_REPS.stop - 1} "
                         f"(FineWeb2 ships up_to_03..up_to_10_reps.json), got {max_reps}")
    return _load(int(max_reps), str(folder or WEIGHTS_DIR))


def repeats(cluster_sizes: np.ndarray, weights: dict[int, int]) -> np.ndarray:
    """Repetitions (int64) per document: the value of the largest key <= its cluster size, else 1.

    Null/NaN/0/negative sizes count as 1; empty ``weights`` give 1 everywhere.
    """
    s = _sizes(cluster_sizes)
    if not weights:
        return np.ones(s.size, dtype=np.int64)
    keys = np.fromiter(sorted(weights), dtype=np.int64)
    values = np.array([weights[k] for k in keys.tolist()], dtype=np.int64)
    idx = np.searchsorted(keys, s, side="right") - 1
    return np.where(idx >= 0, values[np.maximum(idx, 0)], 1).astype(np.int64)


def weights_for(language: str, max_reps: int, rule: Literal["fineweb2", "simple"] = "fineweb2",
                run_distribution: dict | None = None) -> tuple[dict[int, int], str]:
    """The weights for ``language`` and where they came from.

    ``"simple"``: ``SIMPLE`` (``max_reps`` unused). For ``"fineweb2"`` (``max_reps`` in 3..10):
    ``"shipped"``, FineWeb2's table for this language; else ``"run"``, computed from this run's
    ``run_distribution`` when it has documents; else ``"none"``, ``{1: 1}`` (every document once).
    """
    if rule == "simple":
        return dict(SIMPLE), "simple"
    if rule != "fineweb2":
        raise ValueError(f"rule must be 'fineweb2' or 'simple', got {rule!r}")
    shipped = shipped_weights(max_reps)
    if language in shipped:
        return dict(shipped[language]), "shipped"
    if run_distribution and (run_distribution.get("cluster_sizes") or run_distribution.get("tail_threshold")):
        return weights_from_distribution(run_distribution, max_reps), "run"
    return {1: 1}, "none"
