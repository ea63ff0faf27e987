"""Word hashing for MinHash: exact values, and the same hashes whatever block size bounds its memory."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from operators.dedup import minhash
from operators.dedup.minhash import mix64, normalized_words, word_hashes

MASK = (1 << 64) - 1


def reference(word: str) -> int:
    """The documented hash, one word at a time in plain Python: sum of byte * P**position, then mixed with
    the length."""
    total = sum(b * pow(int(minhash._P), i, 1 << 64) for i, b in enumerate(word.encode())) & MASK
    return int(mix64(np.array([total ^ len(word.encode())], dtype=np.uint64))[0])


def test_word_hashes_are_the_per_word_polynomial_hash():
    words = pa.array([["ab", "", "été"], [], ["x" * 40]], pa.list_(pa.string()))
    hashes, offsets = word_hashes(words)
    assert hashes.tolist() == [reference("ab"), reference("été"), reference("x" * 40)]
    assert offsets.tolist() == [0, 2, 2, 3]  # the empty word is dropped


def test_hashing_in_small_blocks_gives_the_hashes_of_one_block(monkeypatch, real_texts):
    words = normalized_words(pa.array(real_texts[:120] + ["", "a " + "y" * 5000])).slice(3)
    whole = word_hashes(words)
    monkeypatch.setattr(minhash, "CHUNK_BYTES", 7)  # most blocks one word; the 5,000-letter word over a block
    blocks = word_hashes(words)
    assert len(whole[0]) > 30_000
    assert np.array_equal(whole[0], blocks[0]) and np.array_equal(whole[1], blocks[1])
