"""Symbol-line clean-up: lines made only of given symbols (and spaces) removed, as FineWeb2 removes ``|`` lines.

As datatrove's ``SymbolLinesFormatter``: a line counts when it is not blank and every character is one of
``symbols`` or a space; each run of such lines becomes one ``replace_char`` line ("" drops the run, FineWeb2
uses "\\n": a paragraph break). Only documents holding a symbol are rewritten (found by Arrow's string kernels
for the whole column first); datatrove also turns every other document's line breaks into "\\n", which is left
out here. Never rejects a document; ``symbol_lines_removed`` counts the lines removed.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Operator, set_column
from operators.filters.text import PUNCTUATION


class SymbolLinesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbols: list[str] = Field(default_factory=lambda: sorted(PUNCTUATION), min_length=1)
    replace_char: str = ""


def clean(text: str, symbols: frozenset[str], replace_char: str) -> tuple[str, int]:
    """(the text without its symbol lines, how many lines went)."""
    out, removed, in_run = [], 0, False
    for line in text.splitlines():
        if line.strip() and all(c in symbols or c == " " for c in line):
            removed += 1
            if not in_run and replace_char:
                out.append(replace_char)
            in_run = True
        else:
            out.append(line)
            in_run = False
    return "\n".join(out), removed


class SymbolLines(Operator):
    name = "symbol_lines"
    adds = {"symbol_lines_removed": pa.int32()}
    Params: ClassVar = SymbolLinesParams

    def __call__(self, batch: pa.Table) -> pa.Table:
        column = batch.column("text")
        symbols = frozenset(self.p.symbols)
        pattern = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(symbols)) + "]"
        holding = pc.fill_null(pc.match_substring_regex(column, pattern), False).to_numpy(zero_copy_only=False)
        texts, removed = column.to_pylist(), [0] * batch.num_rows
        for i in holding.nonzero()[0].tolist():
            texts[i], removed[i] = clean(texts[i], symbols, self.p.replace_char)
        batch = set_column(batch, "symbol_lines_removed", pa.array(removed, type=pa.int32()))
        return set_column(batch, "text", pa.array(texts, type=column.type))
