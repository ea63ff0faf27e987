"""Megatron-LM's indexed dataset (``.bin`` tokens + ``.idx`` index), as megatron-core's
``megatron/core/datasets/indexed_dataset.py`` reads it; written with numpy rather than by importing
megatron-core (and torch) at run time.

``.idx``: ``MMIDIDX\\x00\\x00``, version (uint64 1), dtype code (uint8: 8 = uint16, 4 = int32), sequence count
(uint64), document count + 1 (uint64), sequence lengths (int32), byte pointers into ``.bin`` (int64),
document indices (int64, 0..n: one sequence per document). ``.bin``: the tokens, back to back.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def dtype_for(vocab_size: int) -> np.dtype:
    """megatron-core's ``DType.optimal_dtype``: uint16 below 65500 tokens, else int32."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def write_bin(out: BinaryIO, tokens: np.ndarray, dtype: np.dtype) -> None:
    out.write(tokens.astype(dtype, copy=False).tobytes())


def write_idx(out: BinaryIO, lengths: np.ndarray, dtype: np.dtype) -> None:
    dtype = np.dtype(dtype)
    count = len(lengths)
    pointers = np.zeros(count, np.int64)
    np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    out.write(HEADER + struct.pack("<Q", 1) + struct.pack("<B", CODES[dtype]))
    out.write(struct.pack("<Q", count) + struct.pack("<Q", count + 1))
    out.write(lengths.astype(np.int32).tobytes())
    out.write(pointers.tobytes())
    out.write(np.arange(count + 1, dtype=np.int64).tobytes())
