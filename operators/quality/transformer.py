"""Transformer quality classifiers (FineWeb-Edu, NVIDIA's edu classifiers, any sequence-classification head).

Tokenisation and scoring are split so that an engine can run them on different workers:
:func:`tokenize` (CPU) returns a shard's token ids, truncated to the model's limit, as one flat
array plus offsets; :class:`Scorer` (GPU or CPU) scores them in length-sorted micro-batches, so
a batch pads to its own longest document rather than to the limit. A regression head (one
output, as FineWeb-Edu's) gives its logit; a classification head gives the expected label index
(sum of p_i * i), or the probability of one label when ``label`` is set.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def tokenize(tokenizer, texts: pa.Array, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 token ids, int64 offsets with one more entry than documents) of each text, truncated."""
    if not len(texts):
        return np.zeros(0, np.int32), np.zeros(1, np.int64)
    encoded = tokenizer([t or "" for t in texts.to_pylist()], truncation=True, max_length=max_length,
                        add_special_tokens=True)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def int_score(scores: np.ndarray) -> np.ndarray:
    """FineWeb-Edu's integer score: round(clip(score, 0, 5)); NaN stays missing (-1)."""
    out = np.rint(np.clip(scores, 0, 5))
    return np.where(np.isnan(scores), -1, out).astype(np.int8)


class Scorer:
    """A sequence-classification model that scores token-id arrays in length-sorted micro-batches."""

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 64,
                 label: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.torch = torch
        self.device = "cuda" if device == "gpu" else "cpu"
        self.model = AutoModelForSequenceClassification.from_pretrained(model, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.pad = self.model.config.pad_token_id or 0
        labels = {name: i for i, name in self.model.config.id2label.items()} if label else {}
        if label and label not in labels:
            raise ValueError(f"label {label!r} is not one of the model's labels {sorted(labels)}")
        self.label = labels.get(label)

    def __call__(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """One float32 score per document (offsets delimit each document's ids in ``flat``)."""
        lengths = np.diff(offsets)
        order = np.argsort(lengths, kind="stable")
        order = order[lengths[order] > 0]  # an empty document has no score
        scores = np.full(len(lengths), np.nan, dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = int(lengths[batch].max())
            ids = np.full((len(batch), width), self.pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, doc in enumerate(batch):
                ids[row, :lengths[doc]] = flat[offsets[doc]:offsets[doc + 1]]
                mask[row, :lengths[doc]] = 1
            scores[batch] = self._score(ids, mask)
        return scores

    def _score(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(input_ids=torch.from_numpy(ids).to(self.device),
                                attention_mask=torch.from_numpy(mask).to(self.device)).logits.float()
        if logits.shape[1] == 1:
            return logits[:, 0].cpu().numpy()
        probs = torch.softmax(logits, dim=1)
        if self.label is not None:
            return probs[:, self.label].cpu().numpy()
        return (probs * torch.arange(logits.shape[1], device=probs.device)).sum(dim=1).cpu().numpy()
