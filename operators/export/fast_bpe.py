"""A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen, Mistral Nemo style) run by tiktoken's BPE core, which
encodes 4-5x faster per core than the tokenizers library on the same tokenizer (benchmarks/export_throughput.py).

Only for the tokenizers it can reproduce exactly: a BPE model without dropout, byte fallback or subword affixes,
no normalizer, a byte-level pre-tokenizer (GPT-2's regex, or a Split by a regex before a regex-less ByteLevel)
without an added prefix space. Ranks follow the merge list (a merge's rank is its priority, mapped back to the
tokenizer's ids), and the result must equal the tokenizers library's on a probe text before it is used; texts
that contain an added token's string are left to the tokenizers library (it splits them out, tiktoken would not).
"""

from __future__ import annotations

import json
import re

import numpy as np

CHECK_EVERY = 64  # texts per one checked against the tokenizers library (about 1.5 % more time)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PROBE = ["Hello, world! It's 2024: 3.14159 — naïve café, 東京タワー, Привет мир. 👋🏽\n\n\tdone  ",
         "def f(x):\n    return x**2  # comment\r\n", "  leading spaces and trailing   ", "I'll we've they're 'quoted'",
         "Ünïcödé ﬁ ligature, ½, ٣٤٥, हिन्दी, \u200bzero\u00a0width"]


def _byte_map() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (the characters byte-level BPE vocabularies use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _pattern(pre: dict | None) -> str | None:
    """The split regex of a byte-level pre-tokenizer, or None if it is another kind."""
    if pre is None:
        return None
    if pre["type"] == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    if pre["type"] != "Sequence" or len(pre["pretokenizers"]) != 2:
        return None
    split, level = pre["pretokenizers"]
    if (split["type"] != "Split" or "Regex" not in split["pattern"] or split.get("behavior") != "Isolated"
            or split.get("invert") or level["type"] != "ByteLevel" or level.get("use_regex", True)
            or level.get("add_prefix_space")):
        return None
    return split["pattern"]["Regex"]


class FastBPE:
    """tiktoken's BPE over a tokenizers-library BPE; :func:`fast_bpe` builds one only where it is exact."""

    def __init__(self, encoding, ids: np.ndarray, backend, specials: re.Pattern | None):
        self.encoding, self.ids, self.backend, self.specials = encoding, ids, backend, specials

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids per text, no special tokens added (as ``encode_batch_fast(add_special_tokens=False)``).

        The probe at load is no proof for every text, so every ``CHECK_EVERY``-th text of a call (the first
        included) is encoded by the tokenizers library too; a difference stops the job, naming the way out."""
        out = []
        for i, text in enumerate(texts):
            if self.specials is not None and self.specials.search(text):
                out.append(np.array(self.backend.encode(text, add_special_tokens=False).ids, np.uint32))
                continue
            out.append(self.ids[np.array(self.encoding.encode_ordinary(text), np.int64)])
            if i % CHECK_EVERY == 0 and out[-1].tolist() != self.backend.encode(text, add_special_tokens=False).ids:
                raise RuntimeError("tokenizer: tiktoken's core gives other ids than the tokenizers library on a "
                                   "document; set fast_bpe: false")
        return out


def fast_bpe(backend) -> FastBPE | None:
    """A :class:`FastBPE` for ``backend`` (a ``tokenizers.Tokenizer``) if tiktoken is installed and reproduces it;
    else None (the caller uses the tokenizers library)."""
    try:
        import tiktoken
    except ImportError:
        return None
    spec = json.loads(backend.to_str())
    model, pattern = spec["model"], _pattern(spec.get("pre_tokenizer"))
    if (model["type"] != "BPE" or model.get("dropout") or model.get("byte_fallback") or spec.get("normalizer")
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or pattern is None):
        return None
    chars, vocab = _byte_map(), model["vocab"]
    if any(c not in vocab for c in chars):
        return None
    ranks = {bytes([b]): b for c, b in chars.items()}
    ids = [vocab[c] for c in sorted(chars, key=chars.get)]
    for merge in model["merges"]:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        token = left + right
        if token not in vocab or any(c not in chars for c in token):
            return None
        as_bytes = bytes(chars[c] for c in token)
        if as_bytes in ranks:
            return None
        ranks[as_bytes] = len(ids)
        ids.append(vocab[token])
    added = [t["content"] for t in spec.get("added_tokens", [])]
    specials = re.compile("|".join(map(re.escape, added))) if added else None
    fast = FastBPE(tiktoken.Encoding("export", pat_str=pattern, mergeable_ranks=ranks, special_tokens={}),
                   np.array(ids, np.uint32), backend, specials)
    reference = [e.ids for e in backend.encode_batch(PROBE, add_special_tokens=False)]
    return fast if [a.tolist() for a in fast.encode(PROBE)] == reference else None
