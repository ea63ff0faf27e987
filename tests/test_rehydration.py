"""operators/dedup/rehydration.py: FineWeb2's upsampling by MinHash cluster size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from operators.dedup.rehydration import (
    SIMPLE,
    distribution,
    repeats,
    shipped_weights,
    weights_for,
    weights_from_distribution,
)

# The reference copy of FineWeb2 (../shared next to the repository; not shipped with the project).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fineweb2"
DISTRIBUTIONS = REFERENCE / "misc" / "rehydration" / "distributions"


def test_hand_computed_weights():
    dist = {
        "cluster_sizes": [1, 2, 3, 4, 5, 6, 8],  # no document of size 7
        "cluster_removal_rates": [60.0, 35.0, 30.0, 10.0, 30.0, 42.0, 55.0],
        "cluster_post_filtering_doc_counts": [40, 65, 70, 90, 70, 58, 45],  # not used by the rule
        "tail_threshold": 9,
        "tail_removal_rate": 70.0,
        "tail_post_filtering_doc_counts": 30,
        "global_removal_rate": 50.0,
    }
    # max_reps 5, global 50, lowest rate 10 (size 4): w = 1 + (r - 50) / (10 - 50) * 4 = 1 + (50 - r) / 10
    # where r < 50, else 1. The tail is the last point, at size 9:
    #   size   1    2    3    4    5    6    8    9(tail)
    #   rate   60   35   30   10   30   42   55   70
    #   w      1    2.5  3    5    3    1.8  1    1
    # window-5 means at positions 2..5 (the first two and last two stay unsmoothed):
    #   pos 2: (1 + 2.5 + 3 + 5 + 3) / 5   = 14.5 / 5 = 2.9  -> 3
    #   pos 3: (2.5 + 3 + 5 + 3 + 1.8) / 5 = 15.3 / 5 = 3.06 -> 3
    #   pos 4: (3 + 5 + 3 + 1.8 + 1) / 5   = 13.8 / 5 = 2.76 -> 3
    #   pos 5: (5 + 3 + 1.8 + 1 + 1) / 5   = 11.8 / 5 = 2.36 -> 2
    #   edges: 1, 2.5 -> 2 (half to even), 1, 1
    # rounded: [1, 2, 3, 3, 3, 2, 1, 1] at sizes [1, 2, 3, 4, 5, 6, 8, 9]; a key where the value changes:
    assert weights_from_distribution(dist, 5) == {1: 1, 2: 2, 3: 3, 6: 2, 8: 1}
    # max_reps 3: w = 1 + (50 - r) / 20 = [1, 1.75, 2, 3, 2, 1.4, 1, 1]; means 1.95, 2.03, 1.88, 1.68 -> 2;
    # edges 1, 1.75 -> 2, 1, 1
    assert weights_from_distribution(dist, 3) == {1: 1, 2: 2, 8: 1}


def test_weights_edge_cases():
    # every rate at or above the global rate: all 1 (no division by zero)
    flat = {"cluster_sizes": [1, 2], "cluster_removal_rates": [50.0, 60.0], "tail_threshold": 3,
            "tail_removal_rate": 50.0, "global_removal_rate": 50.0}
    assert weights_from_distribution(flat, 10) == {1: 1}
    assert weights_from_distribution({"cluster_sizes": [], "global_removal_rate": None}, 5) == {1: 1}
    with pytest.raises(ValueError):
        weights_from_distribution(flat, 0)
    # fewer than 5 points: numpy's "same" convolution is 5 long and shifted; FineWeb2's tables keep that
    # (nwb_Latn in up_to_10_reps.json is {1: 1, 2: 10, 4: 4, 8: 10}, although size 8's rate is the global)
    nwb = {"cluster_sizes": [1, 2, 4], "cluster_removal_rates": [66.66666666666666, 0.0, 0.0],
           "tail_threshold": 8, "tail_removal_rate": 50.0, "global_removal_rate": 50.0}
    assert weights_from_distribution(nwb, 10) == {1: 1, 2: 10, 4: 4, 8: 10}


def test_simple_rule():
    sizes = np.array([1, 2, 3, 4, 5, 99, 100, 999, 1000, 5000])
    assert repeats(sizes, SIMPLE).tolist() == [1, 2, 3, 3, 5, 5, 8, 8, 1, 1]
    assert weights_for("fra_Latn", 10, "simple", None) == (SIMPLE, "simple")


def test_repeats_edge_cases():
    sizes = np.array([None, np.nan, 0, -3, 1, 2, 4, 5, 99, 100, 10**9], dtype=object)
    assert repeats(sizes, SIMPLE).tolist() == [1, 1, 1, 1, 1, 2, 3, 5, 5, 8, 1]
    out = repeats(np.array([1, 2, 3, 7]), {5: 4, 2: 3})  # keys in any order; sizes below the smallest: 1
    assert out.tolist() == [1, 3, 3, 4] and out.dtype == np.int64
    assert repeats(np.array([1, 50]), {}).tolist() == [1, 1]
    empty = repeats(np.array([], dtype=np.int64), SIMPLE)
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert repeats(np.array([3.0, np.nan, 2.0]), SIMPLE).tolist() == [3, 1, 2]


def test_distribution_hand_example():
    # 1000 documents: size 1 x600 (two of them null and 0), size 2 x250, 3 x100, 5 x45, 7 x4, 40 x1
    sizes = np.repeat([1, 2, 3, 5, 7, 40], [598, 250, 100, 45, 4, 1]).astype(object)
    sizes = np.concatenate([sizes, np.array([None, 0], dtype=object)])
    removed = np.zeros(sizes.size, dtype=bool)
    removed[:300 - 2] = True  # size 1: 300 removed, counting the null and the 0 below
    removed[598:598 + 50] = True  # size 2: 50
    removed[848:848 + 10] = True  # size 3: 10
    removed[948:948 + 9] = True  # size 5: 9
    removed[997] = True  # size 40: its one document
    removed[-2:] = True
    d = distribution(sizes, removed)
    # cumulative share by size: 60%, 85%, 95%, 99.5%, 99.9% (size 7: not above 99.9%), 100% -> tail at 40,
    # holding 1 document = 0.1%
    assert d == {
        "cluster_sizes": [1, 2, 3, 5, 7],
        "cluster_removal_rates": [50.0, 20.0, 10.0, 20.0, 0.0],
        "cluster_post_filtering_doc_counts": [300, 200, 90, 36, 4],
        "tail_threshold": 40,
        "tail_removal_rate": 100.0,
        "tail_post_filtering_doc_counts": 0,
        "global_removal_rate": 37.0,  # 370 / 1000
    }
    # one more document at size 7: 1000 of 1001 at <= 7 is above 99.9%, so the tail starts at 7
    more = distribution(np.r_[sizes, 7], np.r_[removed, False])
    assert more["tail_threshold"] == 7 and more["cluster_sizes"] == [1, 2, 3, 5]
    assert more["tail_post_filtering_doc_counts"] == 5 and more["tail_removal_rate"] == pytest.approx(100 / 6)
    # an explicit threshold: sizes 5, 7 and 40 pooled (50 documents, 10 removed)
    t5 = distribution(sizes, removed, tail_threshold=5)
    assert (t5["cluster_sizes"], t5["tail_threshold"], t5["tail_removal_rate"], t5["tail_post_filtering_doc_counts"]) \
        == ([1, 2, 3], 5, 20.0, 40)
    # an explicit threshold above every size: the empty tail gets the global rate
    high = distribution(sizes, removed, tail_threshold=1000)
    assert high["tail_post_filtering_doc_counts"] == 0 and high["tail_removal_rate"] == 37.0
    assert json.loads(json.dumps(d)) == d  # plain JSON types
    # the run's weights from it: global 37, lowest rate 0 (size 7)
    w = weights_from_distribution(d, 5)
    assert w == weights_for("xxx_Zzzz", 5, "fineweb2", d)[0]


def test_distribution_empty_and_mismatch():
    d = distribution(np.array([]), np.array([], dtype=bool))
    assert d["cluster_sizes"] == [] and d["tail_threshold"] is None
    assert weights_for("xxx_Zzzz", 5, "fineweb2", d) == ({1: 1}, "none")
    with pytest.raises(ValueError):
        distribution(np.array([1, 2]), np.array([True]))


def test_shipped_weights_fra_latn():
    w = shipped_weights(10)
    fra = w["fra_Latn"]
    expected = {1: 1, 3: 3, 4: 4, 6: 5, 7: 6, 8: 7, 10: 8, 13: 9, 17: 10, 29: 9, 40: 8, 52: 7, 62: 6, 76: 5,
                88: 4, 107: 3}
    assert {k: fra[k] for k in list(fra)[:16]} == expected
    assert list(fra)[-1] == 191 and fra[191] == 1
    assert len(w) == 1856 and all(isinstance(k, int) for k in fra)
    assert shipped_weights(10) is w  # cached
    assert repeats(np.array([1, 2, 3, 17, 20, 191, 10**6]), fra).tolist() == [1, 1, 3, 10, 10, 1, 1]
    for bad in (2, 11):
        with pytest.raises(ValueError, match=r"3\.\.10"):
            shipped_weights(bad)


def test_shipped_weights_folder(tmp_path):
    (tmp_path / "up_to_04_reps.json").write_text(json.dumps({"xyz_Latn": {"2": 4, "1": 1}}))
    assert shipped_weights(4, folder=str(tmp_path)) == {"xyz_Latn": {1: 1, 2: 4}}


def test_weights_for_sources():
    assert weights_for("fra_Latn", 10, "fineweb2", None) == (shipped_weights(10)["fra_Latn"], "shipped")
    run = {"cluster_sizes": [1, 2, 3], "cluster_removal_rates": [60.0, 40.0, 20.0], "tail_threshold": 5,
           "tail_removal_rate": 30.0, "global_removal_rate": 50.0}
    # a language with shipped weights ignores the run's distribution
    assert weights_for("fra_Latn", 3, "fineweb2", run)[1] == "shipped"
    assert weights_for("xxx_Zzzz", 3, "fineweb2", run) == (weights_from_distribution(run, 3), "run")
    assert weights_for("xxx_Zzzz", 3, "fineweb2", None) == ({1: 1}, "none")
    with pytest.raises(ValueError):
        weights_for("fra_Latn", 3, "fineweb3", None)
    with pytest.raises(ValueError, match=r"3\.\.10"):
        weights_for("fra_Latn", 12, "fineweb2", None)


@pytest.mark.timeout(60)
def test_reproduces_shipped_weights():
    """Every language with a reference distribution, max_reps 3..10, against the shipped tables (~5 s)."""
    if not DISTRIBUTIONS.is_dir():
        pytest.skip(f"FineWeb2 reference distributions not found at {DISTRIBUTIONS}")
    dists = {p.stem: json.loads(p.read_text()) for p in sorted(DISTRIBUTIONS.glob("*.json"))}
    total, mismatches = 0, []
    for max_reps in range(3, 11):
        shipped = shipped_weights(max_reps)
        for lang in sorted(dists.keys() & shipped.keys()):
            total += 1
            mine = weights_from_distribution(dists[lang], max_reps)
            if mine != shipped[lang]:
                mismatches.append((lang, max_reps, mine, shipped[lang]))
    print(f"reproduced {total - len(mismatches)}/{total} shipped tables exactly")
    for lang, max_reps, mine, theirs in mismatches:
        print(f"  {lang} up_to_{max_reps:02d}: computed {mine} shipped {theirs}")
    assert total >= 1000
    assert total - len(mismatches) >= 0.99 * total


def test_distribution_round_trip_reference():
    """Rebuild per-document rows for reference languages whose counts can be recovered (every rate
    below 100%, at most 2M documents, the tail's documents put at the threshold): ``distribution``
    gives back their rates, counts and tail threshold, i.e. each tail holds >= 0.1% of the documents."""
    if not DISTRIBUTIONS.is_dir():
        pytest.skip(f"FineWeb2 reference distributions not found at {DISTRIBUTIONS}")
    checked = 0
    for path in sorted(DISTRIBUTIONS.glob("*.json")):
        ref = json.loads(path.read_text())
        rates = np.array(ref["cluster_removal_rates"] + [ref["tail_removal_rate"]])
        post = np.array(ref["cluster_post_filtering_doc_counts"] + [ref["tail_post_filtering_doc_counts"]])
        if (rates >= 100).any():
            continue
        pre = np.rint(post / (1 - rates / 100)).astype(np.int64)
        if pre.sum() > 2_000_000:
            continue
        sizes = np.repeat(ref["cluster_sizes"] + [ref["tail_threshold"]], pre)
        removed = np.concatenate([np.arange(n) < n - p for n, p in zip(pre, post, strict=True)])
        d = distribution(sizes, removed)
        assert d["tail_threshold"] == ref["tail_threshold"], path.stem
        assert d["cluster_sizes"] == ref["cluster_sizes"], path.stem
        assert d["cluster_post_filtering_doc_counts"] == ref["cluster_post_filtering_doc_counts"], path.stem
        np.testing.assert_allclose(d["cluster_removal_rates"], ref["cluster_removal_rates"], rtol=1e-9)
        assert d["global_removal_rate"] == pytest.approx(ref["global_removal_rate"], rel=1e-9)
        assert d["tail_removal_rate"] == pytest.approx(ref["tail_removal_rate"], rel=1e-9)
        checked += 1
    assert checked >= 50
