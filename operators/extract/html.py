"""HTML -> text: resiliparse by default, trafilatura selectable.

Charset comes from the HTTP ``Content-Type`` header, else the HTML ``<meta>`` tag, else
detection (uchardet, via resiliparse). Records that cannot give text are rejected by reason:
``extract.non_html``, ``extract.too_large``, ``extract.timeout``, ``extract.error``,
``extract.empty``. WET records already carry text and pass through untouched. Pages are
extracted in a child process (:mod:`operators.extract.sandbox`) so that the per-page time
limit holds even inside native code.
"""

from __future__ import annotations

import codecs
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

from operators.base import Operator, add_reasons, set_column
from operators.extract.sandbox import Sandbox

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


class ExtractParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: Literal["resiliparse", "trafilatura"] = "resiliparse"
    timeout_s: float = Field(5.0, gt=0, description="per-document wall-clock limit")
    max_bytes: int = Field(4_000_000, gt=0, description="larger HTML bodies are rejected unread")
    main_content: bool = True


def _charset(content_type: str | None) -> str | None:
    if not content_type or "charset=" not in content_type:
        return None
    name = content_type.split("charset=", 1)[1].split(";")[0].strip().strip("\"'")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(body: bytes, content_type: str | None) -> str:
    """Decode HTML bytes: HTTP charset, else ``<meta>`` charset, else detection."""
    encoding = _charset(content_type) or detect_encoding(body, from_html_meta=True)
    return bytes_to_str(body, encoding)


def extract_page(html: bytes, ctype: str | None, engine: str, main_content: bool) -> tuple[str | None, str | None]:
    """(text, rejection rule) for one HTML page."""
    try:
        page = decode_html(html, ctype)
        if engine == "trafilatura":
            import trafilatura  # optional engine, imported only when chosen

            text = trafilatura.extract(page, favor_precision=True, include_comments=False, deduplicate=True) or ""
        else:
            text = extract_plain_text(HTMLTree.parse(page), main_content=main_content, list_bullets=False,
                                      alt_texts=False)
    except Exception:  # noqa: BLE001 - a page the parser cannot handle is counted, not fatal
        return None, "error"
    text = text.strip()
    return (text, None) if text else (None, "empty")


class Extract(Operator):
    name = "extract"
    needs = ("raw_html", "raw_content_type", "raw_length")
    adds = {"text": pa.string()}
    drops = ("raw_html", "raw_content_type", "raw_length")
    Params: ClassVar = ExtractParams

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._sandbox: Sandbox | None = None

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
            if self._sandbox is None:
                self._sandbox = Sandbox(self.p.engine, self.p.main_content, self.p.timeout_s)
            for i, (text, rule) in zip(pages, self._sandbox.run([(htmls[i], ctypes[i]) for i in pages]),
                                       strict=True):
                texts[i] = text
                reasons[i] = f"extract.{rule}" if rule else None
        batch = set_column(batch, "text", pa.array(texts, pa.string()))
        return add_reasons(batch.drop_columns(list(self.drops)), reasons)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sandbox": None}
