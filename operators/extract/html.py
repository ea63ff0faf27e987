"""HTML -> text: resiliparse by default, trafilatura selectable.

Pages are decoded and extracted by :mod:`operators.extract.pages`. Records that cannot give text are rejected by reason:
``extract.non_html``, ``extract.too_large``, ``extract.timeout``, ``extract.error``,
``extract.empty``. WET records already carry text and pass through untouched. Pages are
extracted in a child process (:mod:`operators.extract.sandbox`) so that the per-page time
limit holds even inside native code.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Operator, add_reasons, set_column
from operators.extract.sandbox import Sandbox

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


class ExtractParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: Literal["resiliparse", "trafilatura"] = "resiliparse"
    timeout_s: float = Field(5.0, gt=0, description="per-document wall-clock limit")
    max_bytes: int = Field(4_000_000, gt=0, description="larger HTML bodies are rejected unread")
    memory_mb: int = Field(2048, ge=64, description="address space of the extraction process: a page that "
                                                    "needs more is counted 'error' (a 4 MB page needs about 175)")
    main_content: bool = True


class Extract(Operator):
    name = "extract"
    needs = ("raw_html", "raw_content_type", "raw_length")
    adds = {"text": pa.string()}
    drops = ("raw_html", "raw_content_type", "raw_length")
    Params: ClassVar = ExtractParams

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._sandbox: Sandbox | None = None

    def warm_up(self) -> None:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.p.engine, self.p.main_content, self.p.timeout_s, self.p.memory_mb)
            self._sandbox.start()

    def _unread_rule(self, ctype: str | None, length: int) -> str:
        """Why a record's body was not read: too large for a page, or not a page at all."""
        is_text = ctype is None or ctype.split(";")[0].strip() in TEXT_TYPES
        return "too_large" if is_text and length > self.p.max_bytes else "non_html"

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        htmls = batch.column("raw_html").to_pylist()
        ctypes = batch.column("raw_content_type").to_pylist()
        lengths = batch.column("raw_length").to_pylist()
        reasons = np.full(batch.num_rows, None, dtype=object)
        pages = []
        for i, text in enumerate(texts):
            if text is None and htmls[i] is None:
                reasons[i] = f"extract.{self._unread_rule(ctypes[i], lengths[i])}"
            elif text is None:
                pages.append(i)
        if pages:
            self.warm_up()
            for i, (text, rule) in zip(pages, self._sandbox.run([(htmls[i], ctypes[i]) for i in pages]),
                                       strict=True):
                texts[i] = text
                reasons[i] = f"extract.{rule}" if rule else None
        batch = set_column(batch, "text", pa.array(texts, pa.string()))
        return add_reasons(batch.drop_columns(list(self.drops)), reasons)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sandbox": None}
