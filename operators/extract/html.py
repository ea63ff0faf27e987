"""HTML -> text: resiliparse by default, trafilatura selectable.

Charset comes from the HTTP ``Content-Type`` header, else the HTML ``<meta>`` tag, else
detection (uchardet, via resiliparse). Records that cannot give text are rejected by reason:
``extract.non_html``, ``extract.too_large``, ``extract.timeout``, ``extract.error``,
``extract.empty``. WET records already carry text and pass through untouched.
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
from operators.timeout import TimeLimitExceeded, time_limit


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


class Extract(Operator):
    name = "extract"
    needs = ("raw_html", "raw_content_type", "raw_length")
    adds = {"text": pa.string()}
    drops = ("raw_html", "raw_content_type", "raw_length")
    Params: ClassVar = ExtractParams

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.p.engine == "trafilatura":
            import trafilatura  # optional engine, imported only when chosen

            self._trafilatura = trafilatura

    def _extract(self, html: str) -> str:
        if self.p.engine == "trafilatura":
            return self._trafilatura.extract(html, favor_precision=True, include_comments=False,
                                             deduplicate=True) or ""
        tree = HTMLTree.parse(html)
        return extract_plain_text(tree, main_content=self.p.main_content, list_bullets=False,
                                  alt_texts=False)

    def _one(self, html: bytes | None, ctype: str | None, length: int) -> tuple[str | None, str | None]:
        """(text, rejection rule) for one raw record."""
        if html is None:
            is_html = ctype is None or ctype.split(";")[0].strip() in ("text/html", "application/xhtml+xml")
            return None, "too_large" if is_html and length > self.p.max_bytes else "non_html"
        try:
            with time_limit(self.p.timeout_s):
                text = self._extract(decode_html(html, ctype)).strip()
        except TimeLimitExceeded:
            return None, "timeout"
        except Exception:  # noqa: BLE001 - a page the parser cannot handle is counted, not fatal
            return None, "error"
        return (text, None) if text else (None, "empty")

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        htmls = batch.column("raw_html").to_pylist()
        ctypes = batch.column("raw_content_type").to_pylist()
        lengths = batch.column("raw_length").to_pylist()
        reasons = np.full(batch.num_rows, None, dtype=object)
        for i, text in enumerate(texts):
            if text is None:
                texts[i], rule = self._one(htmls[i], ctypes[i], lengths[i])
                reasons[i] = f"extract.{rule}" if rule else None
        batch = set_column(batch, "text", pa.array(texts, pa.string()))
        return add_reasons(batch.drop_columns(list(self.drops)), reasons)
