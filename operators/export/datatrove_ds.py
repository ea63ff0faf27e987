"""datatrove's (and nanotron's) tokenized files, as ``DocumentTokenizer``/``TokenizedFile`` write them:
``<name>.ds`` the tokens (uint16, or uint32 when the vocabulary passes 65536), ``<name>.ds.index`` each
document's end in tokens (uint64, cumulative), ``<name>.ds.metadata`` ``<tokenizer>|<token size>``, the token
count and it in words. Written with numpy (datatrove packs each document with ``struct``)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np


def dtype_for(vocab_size: int) -> np.dtype:
    """datatrove's token size: 2 bytes up to 65536 tokens, else 4."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def write_ds(out: BinaryIO, tokens: np.ndarray, dtype: np.dtype) -> None:
    out.write(tokens.astype(dtype, copy=False).tobytes())


def write_index(out: BinaryIO, lengths: np.ndarray) -> None:
    out.write(np.cumsum(lengths, dtype=np.uint64).tobytes())


def metadata(tokenizer: str, dtype: np.dtype, tokens: int) -> str:
    """The ``.ds.metadata`` text (datatrove's ``humanize.metric`` count spelt out as a plain number)."""
    return f"{tokenizer}|{np.dtype(dtype).itemsize}\n{tokens}\n{tokens} T"
