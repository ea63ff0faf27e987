"""Nemotron-CC ensemble buckets: cut-points, buckets, ensemble, labels, calibration files, drift, sampling."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from operators.dedup.exact import text_keys
from operators.io.storage import Storage
from operators.quality.buckets import (
    Calibration,
    ClassifierCuts,
    bucket,
    cut_points,
    drift,
    ensemble,
    label,
    load_latest,
    sample_mask,
    save,
)

# A calibration sample of 20 documents as (score, tokens), in no particular order. Sorted by score they are
# 0.05, 0.10, ..., 1.00 (k / 20) with tokens 1 (x10, 0.05..0.50), 5 (x5, 0.55..0.75), 10 (x4, 0.80..0.95)
# and 25 (1.00): 100 tokens in all.
ROWS = [(0.35, 1), (0.9, 10), (0.05, 1), (1.0, 25), (0.6, 5), (0.15, 1), (0.8, 10), (0.5, 1), (0.7, 5),
        (0.25, 1), (0.95, 10), (0.1, 1), (0.65, 5), (0.45, 1), (0.85, 10), (0.3, 1), (0.55, 5), (0.2, 1),
        (0.75, 5), (0.4, 1)]
SCORES = [score for score, _ in ROWS]
TOKENS = [tokens for _, tokens in ROWS]
# Equal weights: the cut-point for p is the (p / 5)-th smallest score (count <= s reaches p % of 20).
EQUAL_CUTS = [k / 20 for k in range(1, 20)]
# Token weights: cumulative tokens by score are 1..10 up to 0.50, then 15 20 25 30 35 (0.55..0.75),
# 45 55 65 75 (0.80..0.95), 100 (1.00); the cut for p is the first score whose cumulative count reaches p:
# p=5 -> 0.25, 10 -> 0.50, 15..35 -> 0.55..0.75, 40 and 45 -> 0.80, 50 and 55 -> 0.85, 60 and 65 -> 0.90,
# 70 and 75 -> 0.95, 80..95 -> 1.00.
TOKEN_CUTS = [0.25, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.8, 0.85, 0.85, 0.9, 0.9, 0.95, 0.95, 1.0, 1.0, 1.0, 1.0]


def test_cut_points_with_equal_and_token_weights():
    assert cut_points(SCORES, [1] * 20) == EQUAL_CUTS
    assert cut_points(SCORES, TOKENS) == TOKEN_CUTS
    assert cut_points(pa.array(SCORES), pa.array(TOKENS)) == TOKEN_CUTS
    assert cut_points(SCORES, TOKENS, percentiles=[50]) == [0.85]
    percentiles = np.arange(5, 100, 5) / 100  # the definition is numpy's weighted inverted-CDF quantile
    assert np.quantile(SCORES, percentiles, method="inverted_cdf", weights=TOKENS).tolist() == TOKEN_CUTS


def test_null_scores_and_their_tokens_are_ignored():
    scores = pa.array([*SCORES, None, None])
    assert cut_points(scores, [*TOKENS, 1000, 1000]) == TOKEN_CUTS
    assert cut_points(np.array([*SCORES, np.nan]), [*TOKENS, 1000]) == TOKEN_CUTS
    assert bucket(pa.array([0.5, None]), EQUAL_CUTS).tolist() == [9, -1]
    assert bucket(np.array([np.nan, 1.0]), EQUAL_CUTS).tolist() == [-1, 19]


def test_empty_sample_is_refused():
    with pytest.raises(ValueError, match="empty calibration sample"):
        cut_points([], [])
    with pytest.raises(ValueError, match="empty calibration sample"):
        cut_points(pa.array([None, None], pa.float32()), [10, 10])


def test_buckets_and_ties_at_cut_points():
    # A score equal to a cut-point goes to the lower bucket: 0.05 is cut 0, so 0.05 -> 0 and 0.0500001 -> 1.
    scores = [0.0, 0.05, 0.0500001, 0.5, 0.95, 0.96, 1.0]
    assert bucket(scores, EQUAL_CUTS).tolist() == [0, 0, 1, 9, 18, 19, 19]
    assert bucket(scores, EQUAL_CUTS).dtype == np.int8
    # The calibration documents themselves fill each bucket once.
    assert bucket(SCORES, EQUAL_CUTS).tolist() == [round(s * 20) - 1 for s in SCORES]
    # Token cuts: 0.80 is cut 7 and 8, so 0.80 -> 7 (cuts below: 0.25 .. 0.75) and 0.85 -> 9.
    assert bucket([0.25, 0.3, 0.8, 0.85, 1.0, 1.5], TOKEN_CUTS).tolist() == [0, 1, 7, 9, 15, 19]


def test_a_score_tied_over_half_the_sample():
    # Ten documents at 0.0 hold 50 %: cuts for p=5..50 are all 0.0, then 0.1 .. 0.9.
    scores = [0.0] * 10 + [k / 10 for k in range(1, 11)]
    cuts = cut_points(scores, [1] * 20)
    assert cuts == [0.0] * 10 + [k / 10 for k in range(1, 10)]
    assert bucket([0.0, 0.1, 0.5, 1.0], cuts).tolist() == [0, 10, 14, 19]
    assert drift(scores, [1] * 20, cuts)["shares"] == [0.5] + [0.0] * 9 + [0.05] * 10


def test_ensemble_is_the_maximum_and_ignores_nulls():
    by_classifier = {"edu": np.array([0, 5, -1, -1, 19], np.int8), "dclm": np.array([3, 2, 7, -1, 0], np.int8),
                     "nemotron": np.array([-1, 5, -1, -1, 18], np.int8)}
    assert ensemble(by_classifier).tolist() == [3, 5, 7, -1, 19]
    assert ensemble(list(by_classifier.values())).tolist() == [3, 5, 7, -1, 19]
    with pytest.raises(ValueError, match="no classifiers"):
        ensemble({})


def test_labels():
    assert label(np.array([0, 6, 7, 11, 12, 17, 18, 19, -1], np.int8)).to_pylist() == [
        "Low", "Low", "Medium-Low", "Medium-Low", "Medium", "Medium", "Medium-High", "High", None]
    assert label(pa.array([19, None, 0], pa.int8())).to_pylist() == ["High", None, "Low"]
    assert label(np.array([], np.int8)).type == pa.string()


def test_drift_of_the_calibration_sample_and_of_a_shifted_one():
    same = drift(SCORES, [1] * 20, EQUAL_CUTS)
    assert same == {"shares": [0.05] * 20, "psi": 0.0, "max_abs_deviation": 0.0, "documents": 20, "tokens": 20.0}
    # Every document one place up (0.10 .. 1.05): bucket 0 empties, 1.00 and 1.05 both land in 19.
    shifted = drift([k / 20 for k in range(2, 22)], [1] * 20, EQUAL_CUTS)
    assert shifted["shares"] == [0.0] + [0.05] * 18 + [0.1]
    # (0 - 0.05) ln(1e-4 / 0.05) + (0.1 - 0.05) ln(0.1 / 0.05) = 0.05 (ln 500 + ln 2)
    assert shifted["psi"] == pytest.approx(0.05 * math.log(1000), rel=1e-12)
    assert shifted["max_abs_deviation"] == 0.05
    # Token weights: documents heavier than 5 % cannot be split, so the calibration sample is not uniform.
    assert drift(SCORES, TOKENS, TOKEN_CUTS)["shares"] == [0.05] * 7 + [0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0,
                                                                        0.25, 0.0, 0.0, 0.0, 0.0]


def test_sample_mask_is_deterministic_by_the_key_tail():
    keys = pa.array(["ff00000000000000", "000000007fffffff", "0000000080000000", "00000000ffffffff", None])
    assert sample_mask(keys, 0.5).tolist() == [True, True, False, False, False]
    assert sample_mask(keys, 1.0).tolist() == [True, True, True, True, False]
    assert sample_mask(keys, 0.0).tolist() == [False] * 5
    real = text_keys(pa.array([f"document number {i}" for i in range(1000)]))
    expected = [int(k[-8:], 16) < 0.25 * 2**32 for k in real.to_pylist()]
    assert sample_mask(real, 0.25).tolist() == expected
    assert sum(expected) == 243  # of 1000, for a 25 % sample
    with pytest.raises(ValueError, match="lower-case hex"):
        sample_mask(pa.array(["not-a-key"]), 0.5)


def calibration(crawl: str, **changes) -> Calibration:
    return Calibration(**{"crawl": crawl, "sample_fraction": 0.01, "documents": 20, "tokens": 100, "classifiers": {
        "edu": ClassifierCuts(column="edu_score", model="nvidia/edu-v1", cut_points=EQUAL_CUTS),
        "dclm": ClassifierCuts(column="dclm_score", model="mlfoundations/dclm-fasttext", cut_points=TOKEN_CUTS),
    }, **changes})


@pytest.fixture
def folder(storage_root):
    return storage_root


def test_save_bumps_versions_and_load_reuses_the_newest(folder):
    storage, root = folder
    assert load_latest(storage, root) is None
    first = save(storage, root, calibration("CC-MAIN-2024-10"))
    second = save(storage, root, calibration("CC-MAIN-2024-10", documents=40))
    older_crawl = save(storage, root, calibration("CC-MAIN-2023-50"))
    assert (first.version, second.version, older_crawl.version) == (1, 2, 1)
    assert save(storage, root, calibration("CC-MAIN-2023-50", version=5)).version == 5
    assert storage.listdir(root) == ["CC-MAIN-2023-50.v1.json", "CC-MAIN-2023-50.v5.json",
                                     "CC-MAIN-2024-10.v1.json", "CC-MAIN-2024-10.v2.json"]
    assert Calibration.model_validate_json(storage.read_bytes(f"{root}/CC-MAIN-2024-10.v1.json")) == first
    assert load_latest(storage, root, "CC-MAIN-2024-10") == second
    assert load_latest(storage, root, "CC-MAIN-2023-50").version == 5
    # A later crawl with no calibration of its own, or no crawl at all, reuses the newest crawl's cut-points.
    assert load_latest(storage, root, "CC-MAIN-2024-18") == second
    assert load_latest(storage, root) == second


def test_a_calibration_that_does_not_match_the_classifiers_is_refused(tmp_path):
    storage, root = Storage(), str(tmp_path)
    save(storage, root, calibration("CC-MAIN-2024-10"))
    wanted = {"edu": "nvidia/edu-v1", "dclm": "mlfoundations/dclm-fasttext"}
    assert load_latest(storage, root, classifiers=wanted).classifiers["dclm"].cut_points == TOKEN_CUTS
    assert load_latest(storage, root, classifiers={"edu": "nvidia/edu-v1"}).version == 1
    assert load_latest(storage, root, classifiers=["dclm", "edu"]).version == 1
    with pytest.raises(ValueError, match=r"no cut-points for classifier 'nemotron' \(it has \['dclm', 'edu'\]\)"):
        load_latest(storage, root, classifiers=["edu", "nemotron"])
    with pytest.raises(ValueError, match=r"CC-MAIN-2024-10\.v1 has no cut-points for classifier 'nemotron'"):
        load_latest(storage, root, classifiers={**wanted, "nemotron": "nvidia/nemotron-edu"})
    with pytest.raises(ValueError, match="'edu' was calibrated with model 'nvidia/edu-v1', not 'nvidia/edu-v2'"):
        load_latest(storage, root, classifiers={"edu": "nvidia/edu-v2"})
