"""Copy keys: where each copy of a document lands in the shuffled stream, from the seed and the document id alone.

A document with ``k`` copies gets one key per copy; copy ``c`` falls in the ``c``-th of ``k`` equal strata of the
key range at a position hashed from (seed, id, c), so copies spread over the stream (and over shards) while the
order of documents inside each stratum stays independent. The top ``PHASE_BITS`` bits of a key, when curriculum
phases are on, hold the phase, so a phase is a contiguous key range and sorting by key orders phases first.
"""

from __future__ import annotations

import hashlib

import numpy as np

BINS = 1 << 16  # histogram bins over the key range (key >> 48)
PHASE_BITS = 5  # with curriculum phases: up to 32 phases
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps, as it should)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def doc_hashes(seed: int, ids: list[str]) -> np.ndarray:
    """One 64-bit hash per document id under ``seed`` (blake2b: stable across processes and machines)."""
    salt = str(seed).encode()
    return np.fromiter((int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=salt).digest(), "little")
                        for i in ids), np.uint64, count=len(ids))


def uniform(hashes: np.ndarray, stream: int) -> np.ndarray:
    """A uniform [0, 1) draw per hash for the named ``stream`` (weights use 1, curriculum 2)."""
    with np.errstate(over="ignore"):
        mixed = _mix(hashes + np.uint64(stream) * GOLDEN)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def copies(hashes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Copies per document for a (weight x repeats) ``factor``: its whole part, plus one more with probability
    its fraction (drawn from the document's hash, so the same every run)."""
    whole = np.floor(factor)
    return (whole + (uniform(hashes, 1) < factor - whole)).astype(np.int64)


def copy_keys(hashes: np.ndarray, counts: np.ndarray, phases: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(document row, key) of every copy: ``counts[i]`` copies of row ``i``, stratified as the module says;
    ``phases`` (or None: no phases) goes in the top bits."""
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    copy = np.arange(len(rows)) - np.repeat(starts, counts)
    bits = 64 - PHASE_BITS if phases is not None else 63
    span = (np.uint64(1) << np.uint64(bits)) // np.repeat(counts, counts).astype(np.uint64)
    with np.errstate(over="ignore"):
        drawn = _mix(hashes[rows] ^ _mix(copy.astype(np.uint64) + GOLDEN))
    keys = copy.astype(np.uint64) * span + drawn % span
    if phases is not None:
        keys |= phases[rows].astype(np.uint64) << np.uint64(bits)
    return rows, keys


def bins(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(48)).astype(np.int64)


def phase_of_bin(b: int, phased: bool) -> int:
    return b >> (16 - PHASE_BITS) if phased else 0


def bin_start(b: int) -> int:
    """The first key of histogram bin ``b`` (``b == BINS``: one past the last key)."""
    return b << 48


def rehash(hashes: np.ndarray, stream: int) -> np.ndarray:
    """Independent hashes of the same documents for another use (the final phase's copies: stream 2)."""
    with np.errstate(over="ignore"):
        return _mix(hashes + np.uint64(stream) * GOLDEN ^ np.uint64(0x5851F42D4C957F2D))
