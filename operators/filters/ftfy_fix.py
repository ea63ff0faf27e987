"""FTFY formatter: mojibake and other Unicode damage repaired with the ``ftfy`` library, as FineWeb2 does.

FineWeb2 (datatrove's ``FTFYFormatter``) fixes encodings, lossy sequences, C1 controls, surrogates and HTML
escapes, and removes control characters and terminal escapes, but leaves the text's own form alone: no
ligature, width, quote or line-break changes and no Unicode normalisation (a model should see text as written).
The same defaults here. Never rejects a document; ``ftfy_fixed`` says whether its text changed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from operators.base import Operator, set_column


class FtfyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unescape_html: Literal["auto"] | bool = "auto"
    remove_terminal_escapes: bool = True
    fix_encoding: bool = True
    restore_byte_a0: bool = True
    replace_lossy_sequences: bool = True
    decode_inconsistent_utf8: bool = True
    fix_c1_controls: bool = True
    fix_latin_ligatures: bool = False
    fix_character_width: bool = False  # would give Chinese and Japanese half-width punctuation
    uncurl_quotes: bool = False
    fix_line_breaks: bool = False
    fix_surrogates: bool = True
    remove_control_chars: bool = True
    normalization: Literal["NFC", "NFD", "NFKC", "NFKD"] | None = None


class Ftfy(Operator):
    name = "ftfy"
    adds = {"ftfy_fixed": pa.bool_()}
    Params: ClassVar = FtfyParams

    def __init__(self, **params):
        super().__init__(**params)
        from ftfy import TextFixerConfig

        self.config = TextFixerConfig(**self.p.model_dump())

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ftfy import fix_text

        column = batch.column("text")
        texts = column.to_pylist()
        fixed = [fix_text(t, config=self.config) if t else t for t in texts]  # per text: ftfy has no batch call
        batch = set_column(batch, "ftfy_fixed", pa.array([a != b for a, b in zip(texts, fixed, strict=True)]))
        return set_column(batch, "text", pa.array(fixed, type=column.type))
