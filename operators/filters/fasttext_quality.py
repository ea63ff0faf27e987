"""DCLM's fastText quality classifier (Li et al. 2024, "DataComp-LM"), or any binary fastText classifier.

``model`` is a local path, an ``s3://`` URI, or a Hugging Face hub repo id (``org/name``, with
``filename`` in it); the default is DCLM's OpenHermes + ELI5 vs RefinedWeb bigram model. The score
``<column>`` is p(``label``): when the top predicted label is the other one, 1 - p(top), as DCLM
computes it (unclipped, so it can be 1e-5 outside [0, 1]). With ``threshold`` set (DCLM-Baseline:
0.018112), documents scoring below it are rejected as ``dclm_fasttext.threshold``.

The operator is registered under one name, so a chain holds one instance of it; another classifier
goes through the same operator by setting ``model``, ``label`` and ``column``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from functools import lru_cache
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Filter
from operators.io.storage import Storage, is_s3

KEY = "pipeline.dclm_fasttext"
DCLM_REPO = "mlfoundations/fasttext-oh-eli5"
DCLM_FILE = "openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin"
HUB_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")


class FastTextQualityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = DCLM_REPO
    filename: str = DCLM_FILE
    label: str = "__label__hq"
    column: str = Field("dclm_score", pattern=r"^[a-z][a-z0-9_]*$")
    threshold: float | None = Field(None, ge=0, le=1)


def prepare(text: str | None) -> str:
    """The line given to the model: DCLM's ``classify_fasttext_hq_prob``
    (mlfoundations/dclm, baselines/mappers/enrichers/quality_prediction_enrichers_calc_fasttext.py):
    strip, then join ``str.splitlines()`` with one space, empty lines included. datatrove's
    FastTextClassifierFilter deletes "\\n" instead, NeMo Curator replaces only "\\n" with a space."""
    return " ".join((text or "").strip().splitlines())


def _hub_file(repo: str, filename: str, key: str) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename)
    except Exception as err:  # any hub failure (network, missing repo or file, auth) is one line
        raise FileNotFoundError(f"{key}.model: {repo} is not a local file and {filename} could not be fetched "
                                f"from that Hugging Face hub repo ({type(err).__name__}); download it and set "
                                f"the model to its path or s3:// URI") from None


def _load(path: str, model: str, key: str):
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time warning
    try:
        return fasttext.load_model(path)
    except ValueError:
        raise ValueError(f"{key}.model: {model} is not a fastText model") from None


@lru_cache(maxsize=4)
def load_classifier(model: str, filename: str = DCLM_FILE, storage: Storage | None = None, key: str = KEY):
    """Load (once per process) a fastText model from a path, an s3:// URI (streamed to a temporary
    file) or a hub repo id (``filename`` in it, through the Hugging Face cache); errors name ``key``."""
    if is_s3(model):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, os.path.basename(model))
            with (storage or Storage()).open_read(model) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
            return _load(path, model, key)
    path = model if os.path.exists(model) or not HUB_ID.fullmatch(model) else _hub_file(model, filename, key)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{key}.model: {model} does not exist")
    return _load(path, model, key)


class FastTextQualityFilter(Filter):
    name = "dclm_fasttext"
    adds = {"dclm_score": pa.float32()}
    Params: ClassVar = FastTextQualityParams

    @classmethod
    def columns(cls, params: dict) -> dict[str, pa.DataType]:
        return {params.get("column") or "dclm_score": pa.float32()}

    def __init__(self, storage: Storage | None = None, **kwargs):
        super().__init__(**kwargs)
        self.adds = self.columns(self.p.model_dump())
        self.model = load_classifier(self.p.model, self.p.filename, storage)
        labels = self.model.get_labels()
        if len(labels) != 2:
            raise ValueError(f"{KEY}.model: {self.p.model} has {len(labels)} labels; a binary classifier is needed")
        if self.p.label not in labels:
            raise ValueError(f"{KEY}.label: {self.p.label!r} is not one of the model's labels {labels}")

    def signals(self, batch: pa.Table) -> dict:
        texts = [prepare(t) for t in batch.column("text").to_pylist()]
        labels, probs = self.model.predict(texts, k=1) if texts else ([], [])
        top = np.array([label[0] for label in labels], dtype=object)
        p = np.array([prob[0] for prob in probs], dtype=np.float64)
        return {self.p.column: np.where(top == self.p.label, p, 1 - p)}

    def rules(self, s: dict[str, np.ndarray]):
        if self.p.threshold is not None:
            yield "threshold", s[self.p.column] < self.p.threshold
