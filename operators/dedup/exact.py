"""Exact-duplicate keys: a hash of the normalised text, vectorised normalisation over Arrow."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc


def normalize(texts: pa.Array, nfc: bool = True, fold_whitespace: bool = True, lowercase: bool = True) -> pa.Array:
    """NFC, whitespace runs folded to one space (and trimmed), lower-cased: each step optional."""
    texts = pc.fill_null(texts, "")
    if nfc:
        texts = pc.utf8_normalize(texts, "NFC")
    if fold_whitespace:
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))
    if lowercase:
        texts = pc.utf8_lower(texts)
    return texts


def text_keys(texts: pa.Array, bits: int = 64, **normalization) -> pa.Array:
    """Hex BLAKE2b digest (``bits`` 64 or 128) of each normalised text."""
    size = bits // 8
    return pa.array([hashlib.blake2b(t.encode(), digest_size=size).hexdigest()
                     for t in normalize(texts, **normalization).to_pylist()], pa.string())
