"""The export's tokenizer: a fast (Rust) tokenizer loaded from a local folder or a hub id, batch-encoded to one
flat token array per batch, each document followed by the end-of-document token."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from operators.export.fast_bpe import FastBPE, fast_bpe


@dataclass(frozen=True)
class ExportTokenizer:
    """``name`` (folder or hub id) and ``eos``: True for the tokenizer's own EOS, False for none, or a token;
    ``fast``: run a byte-level BPE by tiktoken's core where that gives the same ids (``fast_bpe.py``)."""

    name: str
    eos: bool | str = True
    fast: bool = True

    @cached_property
    def _loaded(self) -> tuple:
        """(tokenizers.Tokenizer, its EOS token or None). A folder with ``tokenizer.json`` is read directly (no
        transformers import on every worker); anything else goes through transformers' AutoTokenizer."""
        from tokenizers import Tokenizer

        folder = os.path.expanduser(self.name)
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            config = os.path.join(folder, "tokenizer_config.json")
            eos = json.load(open(config)).get("eos_token") if os.path.isfile(config) else None
            eos = eos.get("content") if isinstance(eos, dict) else eos
            return Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), eos
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(self.name)
        if not auto.is_fast:
            raise ValueError(f"tokenizer: {self.name} has no fast tokenizer")
        return auto.backend_tokenizer, auto.eos_token

    @property
    def backend(self):
        return self._loaded[0]

    @cached_property
    def fast_bpe(self) -> FastBPE | None:
        return fast_bpe(self.backend) if self.fast else None

    @property
    def engine(self) -> str:
        return "tiktoken" if self.fast_bpe is not None else "tokenizers"

    @cached_property
    def eos_id(self) -> int | None:
        """The id appended after each document (None: nothing appended)."""
        if self.eos is False:
            return None
        token = self._loaded[1] if self.eos is True else self.eos
        found = self.backend.token_to_id(token) if token else None
        if found is None:
            raise ValueError(f"eos: the tokenizer {self.name} has no {'EOS token' if token is None else repr(token)}")
        return found

    @cached_property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @cached_property
    def sha256(self) -> str:
        """A hash of the tokenizer as it encodes (its canonical JSON), so equal files hash equal wherever they are."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat uint32 tokens, int64 length per document), EOS included; no other special tokens are added
        (as Megatron-LM's preprocess_data.py: the tokens of the text, then the end of document)."""
        if self.fast_bpe is not None:
            ids = self.fast_bpe.encode(texts)
        else:
            ids = [np.array(e.ids, np.uint32) for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), np.int64, count=len(ids))
        if self.eos_id is None:
            return np.concatenate(ids or [np.zeros(0, np.uint32)]), lengths
        eos = np.array([self.eos_id], np.uint32)
        return np.concatenate([part for doc in ids for part in (doc, eos)] or [eos[:0]]), lengths + 1
