"""MinHash signatures and LSH band keys, vectorised with numpy over a whole Arrow batch.

Written by hand because no maintained library computes them over Arrow columns without a
Python call per document (datasketch hashes one document at a time): here words are hashed
straight from the Arrow string buffers, shingles and the ``b x r`` permutations are numpy array
ops, and the per-document minimum is one ``np.minimum.reduceat``. All hashing is seeded and
process-independent (no Python ``hash()``), so signatures are identical on every executor.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_P = np.uint64(0x100000001B3)
_MAX = np.iinfo(np.uint64).max
CHUNK_SHINGLES = 1 << 15  # shingles per (shingles x permutations) block, bounding memory
CHUNK_BYTES = 1 << 21  # text bytes per word-hashing block, bounding memory


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-distributed 64-bit mixer (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def normalized_words(texts: pa.Array) -> pa.ListArray:
    """Lower-cased word lists (runs of letters/digits), NFC-normalised."""
    texts = pc.fill_null(texts, "")
    text = pc.utf8_normalize(texts, "NFC")
    text = pc.replace_substring_regex(pc.utf8_lower(text), r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_split_whitespace(pc.utf8_trim_whitespace(text))


def word_hashes(words: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash per non-empty word, flattened; word offsets per document).

    Hashed ``CHUNK_BYTES`` of words at a time: the per-byte arrays take about 32 bytes per text byte, so
    memory follows the chunk, not the batch.
    """
    per_doc = np.diff(np.asarray(words.offsets, dtype=np.int64))
    flat = words.flatten()
    buf = np.frombuffer(flat.buffers()[1], dtype=np.int32)[flat.offset: flat.offset + len(flat) + 1]
    lengths = np.diff(buf).astype(np.int64)
    keep = lengths > 0
    counts = np.bincount(np.repeat(np.arange(len(per_doc)), per_doc)[keep], minlength=len(per_doc))
    doc_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not keep.any():
        return np.zeros(0, np.uint64), doc_offsets
    raw = np.frombuffer(flat.buffers()[2], dtype=np.uint8)
    starts, lengths = buf[:-1].astype(np.int64)[keep], lengths[keep]
    powers = np.full(int(lengths.max()), _P, dtype=np.uint64)
    powers[0] = 1
    ends = np.cumsum(lengths)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(ends, np.arange(CHUNK_BYTES, ends[-1], CHUNK_BYTES)),
                                     [len(starts)]]))
    hashed = np.empty(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        powers = np.cumprod(powers, dtype=np.uint64)
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):  # words lo..hi-1 lie back to back in ``raw``
            first = starts[lo:hi] - starts[lo]
            data = raw[starts[lo]: starts[hi - 1] + lengths[hi - 1]].astype(np.uint64)
            position = np.arange(len(data), dtype=np.int64) - np.repeat(first, lengths[lo:hi])
            hashed[lo:hi] = np.add.reduceat(data * powers[position], first)
    return mix64(hashed ^ lengths.astype(np.uint64)), doc_offsets


def shingle_hashes(hashes: np.ndarray, doc_offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of word ``n``-grams (one shingle of all words for shorter documents), with per-doc offsets."""
    counts = np.diff(doc_offsets)
    per_doc = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    shingle_offsets = np.concatenate([[0], np.cumsum(per_doc)])
    total = int(shingle_offsets[-1])
    doc = np.repeat(np.arange(len(counts)), per_doc)
    start = doc_offsets[:-1][doc] + (np.arange(total) - shingle_offsets[:-1][doc])
    width = np.minimum(counts[doc], n)
    out = np.zeros(total, dtype=np.uint64)
    for k in range(n):
        active = k < width
        index = np.where(active, start + k, 0)
        with np.errstate(over="ignore"):
            out = np.where(active, mix64(out * _P + hashes[index]) if len(hashes) else out, out)
    return out, shingle_offsets


def permutation_seeds(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, _MAX, size=count, dtype=np.uint64, endpoint=True)


def signatures(shingles: np.ndarray, shingle_offsets: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(documents x permutations) MinHash matrix; documents without shingles get all-max rows."""
    docs = len(shingle_offsets) - 1
    out = np.full((docs, len(seeds)), _MAX, dtype=np.uint64)
    nonempty = np.flatnonzero(np.diff(shingle_offsets) > 0)
    starts, ends = shingle_offsets[nonempty], shingle_offsets[nonempty + 1]
    i = 0
    while i < len(nonempty):  # blocks of whole documents holding about CHUNK_SHINGLES shingles
        j = max(i + 1, int(np.searchsorted(ends, starts[i] + CHUNK_SHINGLES, side="right")))
        values = mix64(shingles[starts[i]: ends[j - 1], None] ^ seeds[None, :])
        out[nonempty[i:j]] = np.minimum.reduceat(values, starts[i:j] - starts[i], axis=0)
        i = j
    return out


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents x bands) bucket keys as int64: each band's ``rows`` values hashed together."""
    grouped = signature[:, : bands * rows].reshape(len(signature), bands, rows)
    key = np.zeros(grouped.shape[:2], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = mix64(key * _P ^ grouped[:, :, r])
    return key.view(np.int64)


def wordless(keys: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Which rows of :func:`band_keys` belong to documents without words (all-max signatures)."""
    empty = band_keys(np.full((1, bands * rows), _MAX, dtype=np.uint64), bands, rows)
    return (keys == empty).all(axis=1)


def tokenized_words(texts: pa.Array, tokenize) -> pa.ListArray:
    """Word lists from a word tokenizer (``text -> tokens``): NFC, lower-cased, tokens without a letter or
    digit dropped (FineWeb2 deduplicates on its language's words)."""
    lists = pa.array([list(tokenize(t)) if t else [] for t in texts.to_pylist()], pa.list_(pa.string()))
    flat = pc.utf8_lower(pc.utf8_normalize(lists.flatten(), "NFC"))
    keep = pc.fill_null(pc.match_substring_regex(flat, r"[\p{L}\p{N}]"), False)
    parents = pc.list_parent_indices(lists).to_numpy()
    counts = np.bincount(parents[keep.to_numpy(zero_copy_only=False)], minlength=len(lists))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, flat.filter(keep))


def language_salt(language: str | None) -> np.uint64:
    """A key for ``language`` mixed into band keys, so that buckets never hold two languages."""
    digest = hashlib.blake2b((language or "").encode(), digest_size=8).digest()
    return np.frombuffer(digest, dtype=np.uint64)[0]


def bands_of_words(words: pa.ListArray, n: int, bands: int, rows: int, seed: int) -> np.ndarray:
    """LSH bucket keys (documents x bands) for word lists."""
    hashes, doc_offsets = word_hashes(words)
    shingles, shingle_offsets = shingle_hashes(hashes, doc_offsets, n)
    return band_keys(signatures(shingles, shingle_offsets, permutation_seeds(bands * rows, seed)), bands, rows)


def minhash_bands(texts: pa.Array, n: int, bands: int, rows: int, seed: int) -> np.ndarray:
    """LSH bucket keys (documents x bands) for a column of texts."""
    return bands_of_words(normalized_words(texts), n, bands, rows, seed)


def shingle_sets(texts: pa.Array, n: int) -> list[np.ndarray]:
    """Unique shingle hashes per document (for true-Jaccard verification)."""
    return word_shingle_sets(normalized_words(texts), n)


def word_shingle_sets(words: pa.ListArray, n: int) -> list[np.ndarray]:
    """Unique shingle hashes per document of word lists."""
    hashes, doc_offsets = word_hashes(words)
    shingles, offsets = shingle_hashes(hashes, doc_offsets, n)
    return [np.unique(shingles[offsets[i]: offsets[i + 1]]) for i in range(len(offsets) - 1)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique arrays (1.0 for two empty sets)."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
