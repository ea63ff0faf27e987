"""One HTML page -> text, imported alone by the extraction child (so it starts in a fraction of a second).

Charset comes from the HTTP ``Content-Type`` header, else the HTML ``<meta>`` tag, else
detection (uchardet, via resiliparse).
"""

from __future__ import annotations

import codecs

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree


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
