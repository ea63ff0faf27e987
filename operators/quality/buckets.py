"""Nemotron-CC ensemble quality buckets (Su et al. 2024, "Nemotron-CC", section 2.1).

Each classifier's scores are cut into 20 buckets of (about) 5 % of the tokens each at percentile cut-points
computed once on a calibration sample; a document's bucket is an integer 0..19 per classifier, the ensemble
bucket is the maximum over classifiers, and five quality labels group the ensemble buckets.

Definitions (``W(A)`` is the total weight, i.e. tokens, of the sample documents in ``A``):

* cut-point for percentile ``p``: the smallest sample score ``s`` with ``W(score <= s) >= p % of W(all)``
  (the weighted "inverted CDF" quantile; with equal weights ``np.quantile(..., method="inverted_cdf")``);
* bucket of a score ``x``: the number of cut-points strictly below ``x``, so bucket ``k`` is the interval
  ``(cut[k-1], cut[k]]`` and a score equal to a cut-point goes to the LOWER bucket. With the cut-point
  definition above this is what makes every calibration bucket hold its 5 %: the document at a cut-point is
  the one that completes the lower bucket's mass. Equal cut-points (a score tied over more than 5 % of the
  weight) leave the buckets between them empty.
* null and NaN scores (and null/NaN weights) are left out of cut-points and shares; their bucket is
  ``NULL_BUCKET`` (-1), which also makes ``ensemble`` a plain maximum.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.io.layout import safe_segment
from operators.io.storage import Storage, join

PERCENTILES = tuple(range(5, 100, 5))
NULL_BUCKET = -1
LABELS = ("Low",) * 7 + ("Medium-Low",) * 5 + ("Medium",) * 6 + ("Medium-High", "High")
PSI_EPSILON = 1e-4
CALIBRATION_FILE = re.compile(r"(?P<crawl>.+)\.v(?P<version>[0-9]+)\.json")


def _floats(values) -> np.ndarray:
    """float64 numpy copy of ``values`` (Arrow, numpy or a list); nulls become NaN."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _scored(scores, weights) -> tuple[np.ndarray, np.ndarray]:
    s, w = _floats(scores), _floats(weights)
    if s.shape != w.shape:
        raise ValueError(f"{s.size} scores but {w.size} weights")
    keep = ~(np.isnan(s) | np.isnan(w))
    if np.any(w[keep] < 0):
        raise ValueError("weights (token counts) must not be negative")
    return s[keep], w[keep]


def cut_points(scores, weights, percentiles: Iterable[int] = PERCENTILES) -> list[float]:
    """Token-weighted percentile cut-points of one classifier's scores over a calibration sample.

    For each ``p``: the smallest score ``s`` such that the weight of documents with ``score <= s`` is at least
    ``p`` % of the total weight. Null/NaN scores are ignored with their weight. The comparison is
    ``100 * cumulative_weight >= p * total``, exact for integer token counts.
    """
    s, w = _scored(scores, weights)
    total = w.sum()
    if s.size == 0 or total <= 0:
        raise ValueError("empty calibration sample: no document with a score and a positive token count")
    order = np.argsort(s, kind="stable")
    cumulative = np.cumsum(w[order]) * 100
    at = np.searchsorted(cumulative, np.asarray(list(percentiles), dtype=np.float64) * total, side="left")
    return s[order][at].tolist()


def bucket(scores, cuts: Sequence[float]) -> np.ndarray:
    """int8 bucket per score: the number of cut-points strictly below it (0..len(cuts)); null/NaN -> -1."""
    c = np.asarray(cuts, dtype=np.float64)
    if np.any(np.diff(c) < 0):
        raise ValueError("cut-points must be in ascending order")
    s = _floats(scores)
    out = np.searchsorted(c, s, side="left").astype(np.int8)
    out[np.isnan(s)] = NULL_BUCKET
    return out


def ensemble(buckets_by_classifier: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """Maximum bucket over classifiers per document; a classifier's null (-1) is ignored, all null -> -1."""
    columns = list(buckets_by_classifier.values() if isinstance(buckets_by_classifier, Mapping)
                   else buckets_by_classifier)
    if not columns:
        raise ValueError("ensemble of no classifiers")
    return np.max(np.stack([np.asarray(c, dtype=np.int8) for c in columns]), axis=0)


def label(buckets) -> pa.StringArray:
    """Quality label per ensemble bucket: High 19, Medium-High 18, Medium 12-17, Medium-Low 7-11, Low 0-6;
    null for a null bucket (-1, or an Arrow null)."""
    if isinstance(buckets, pa.ChunkedArray | pa.Array):
        buckets = pc.fill_null(buckets, NULL_BUCKET).to_numpy(zero_copy_only=False)
    b = np.asarray(buckets, dtype=np.int8)
    if np.any(b > len(LABELS) - 1):
        raise ValueError(f"buckets run 0..{len(LABELS) - 1}")
    return pa.array(LABELS, pa.string()).take(pa.array(b, mask=b < 0))


def drift(scores, weights, cuts: Sequence[float]) -> dict:
    """How a crawl's scores fall into the calibration buckets.

    ``shares[k]``: the token-weighted share of scored documents in bucket ``k``; on the calibration sample each
    is ``e = 1 / (len(cuts) + 1)`` (5 %) by construction (up to ties and documents heavier than 5 %).
    ``psi = sum_k (shares[k] - e) * ln(max(shares[k], 1e-4) / e)`` (population stability index against the
    uniform shares; the floor keeps an empty bucket finite), ``max_abs_deviation = max_k |shares[k] - e|``.
    """
    s, w = _scored(scores, weights)
    if w.sum() <= 0:
        raise ValueError("no document with a score and a positive token count")
    shares = np.bincount(bucket(s, cuts), weights=w, minlength=len(cuts) + 1) / w.sum()
    expected = 1 / (len(cuts) + 1)
    psi = np.sum((shares - expected) * np.log(np.maximum(shares, PSI_EPSILON) / expected))
    return {"shares": shares.tolist(), "psi": float(psi), "max_abs_deviation": float(np.max(np.abs(shares - expected))),
            "documents": int(s.size), "tokens": float(w.sum())}


def sample_mask(keys, fraction: float) -> np.ndarray:
    """Deterministic sample of documents by a lower-case hex hash: the exact-dedup text key (``text_keys``)
    or the document ``id`` (a BLAKE2b hex digest, ``operators.io.warc.document_id``).

    A document is in the sample when its key's LAST 8 hex digits, read as an integer ``v``, satisfy
    ``v < fraction * 2**32`` (the last digits, not the first, so the sample does not line up with the score
    cache's first-2-digit partitions). The same key is always in or out; null keys are out.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"sample fraction {fraction} is not in [0, 1]")
    if pc.all(pc.match_substring_regex(keys, "^[0-9a-f]{8,}$")).as_py() is False:
        raise ValueError("sample keys must be lower-case hex of at least 8 digits (text keys or document ids)")
    bound = math.ceil(fraction * 2**32)
    inside = pc.is_valid(keys) if bound >= 2**32 else pc.less(pc.utf8_slice_codeunits(keys, -8), f"{bound:08x}")
    return pc.fill_null(inside, False).to_numpy(zero_copy_only=False)


class ClassifierCuts(BaseModel):
    """One classifier's calibration: the score column it reads, the model that scored, its cut-points."""

    model_config = ConfigDict(extra="forbid")

    column: str
    model: str
    cut_points: list[float]

    @field_validator("cut_points")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(b < a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("cut_points must be in ascending order")
        return value


class Calibration(BaseModel):
    """Cut-points computed on a sample of one crawl, saved as ``<folder>/<crawl>.v<version>.json``."""

    model_config = ConfigDict(extra="forbid")

    crawl: str
    version: int = Field(1, ge=1)
    sample_fraction: float = Field(gt=0, le=1)
    documents: int = Field(ge=0)
    tokens: int = Field(ge=0)
    classifiers: dict[str, ClassifierCuts]

    @field_validator("crawl")
    @classmethod
    def _safe(cls, value: str) -> str:
        if not safe_segment(value):
            raise ValueError(f"{value!r} is not a safe file name")
        return value

    def require(self, classifiers: Mapping[str, str] | Iterable[str]) -> None:
        """Refuse (ValueError) unless every wanted classifier has cut-points, computed with the same model when
        ``classifiers`` maps names to models (a plain list of names checks the names only)."""
        name = f"calibration {self.crawl}.v{self.version}"
        wanted = classifiers if isinstance(classifiers, Mapping) else dict.fromkeys(classifiers)
        for classifier, model in wanted.items():
            if classifier not in self.classifiers:
                raise ValueError(f"{name} has no cut-points for classifier {classifier!r} "
                                 f"(it has {sorted(self.classifiers)}); recalibrate")
            if model is not None and self.classifiers[classifier].model != model:
                raise ValueError(f"{name}: classifier {classifier!r} was calibrated with model "
                                 f"{self.classifiers[classifier].model!r}, not {model!r}; recalibrate")


def _versions(storage: Storage, folder: str) -> list[tuple[str, int]]:
    found = (CALIBRATION_FILE.fullmatch(name) for name in storage.listdir(folder))
    return sorted((m["crawl"], int(m["version"])) for m in found if m)


def calibration_path(folder: str, crawl: str, version: int) -> str:
    return join(folder, f"{crawl}.v{version}.json")


def save(storage: Storage, folder: str, calibration: Calibration) -> Calibration:
    """Write ``calibration`` whole (atomically) as a new version: its own, or one past the newest saved for
    its crawl, never over an existing file. Returns it with the version written. (One writer at a time: two
    concurrent saves for one crawl could pick the same version.)"""
    taken = [v for crawl, v in _versions(storage, folder) if crawl == calibration.crawl]
    saved = calibration.model_copy(update={"version": max([calibration.version, *(v + 1 for v in taken)])})
    storage.write_text(calibration_path(folder, saved.crawl, saved.version), saved.model_dump_json(indent=2))
    return saved


def load_latest(storage: Storage, folder: str, crawl: str | None = None,
                classifiers: Mapping[str, str] | Iterable[str] | None = None) -> Calibration | None:
    """The highest version saved for ``crawl``; if ``crawl`` is None or has none, the highest version of the
    newest crawl by name (``CC-MAIN-YYYY-WW`` ids sort by date), so later crawls reuse the cut-points.
    None when the folder holds no calibration. With ``classifiers`` (``{name: model}`` or names), a
    calibration that lacks one of them, or computed it with another model, is refused (``Calibration.require``)."""
    saved = _versions(storage, folder)
    own = [entry for entry in saved if entry[0] == crawl]
    if not (own or saved):
        return None
    chosen = (own or saved)[-1]
    calibration = Calibration.model_validate_json(storage.read_bytes(calibration_path(folder, *chosen)))
    if classifiers is not None:
        calibration.require(classifiers)
    return calibration
