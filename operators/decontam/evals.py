"""Evaluation sets as the user has them: JSONL (one object a line) or Parquet files, local or s3://, text in one
or more fields."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow.parquet as pq

from operators.io.storage import Storage

FORMATS = (".jsonl", ".parquet")


def _text(value) -> str | None:
    """A field's value as text: a list (answer choices) joined by spaces; None stays missing."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value if v is not None)
    return str(value)


def _joined(row: dict, fields: list[str], bad: Counter) -> str | None:
    values = [_text(row.get(f)) for f in fields]
    for f, v in zip(fields, values, strict=True):
        if v is None:
            bad[f"missing_{f}"] += 1
    present = [v for v in values if v]
    return " ".join(present) if present else None


def missing_columns(storage: Storage, path: str, fields: list[str]) -> str | None:
    """What a Parquet evaluation file lacks of ``fields``, as one line; None when it has them all."""
    fs, inner = storage.filesystem(path)
    names = pq.read_schema(inner, filesystem=fs).names
    missing = [f for f in fields if f not in names]
    return f"{path} has no column(s) {', '.join(missing)} (its columns: {', '.join(names)})" if missing else None


def read_texts(storage: Storage, path: str, fields: list[str]) -> tuple[list[str], Counter]:
    """Each row's ``fields`` joined by a space, in order, and the bad rows counted by reason (a line that is
    not a JSON object, a missing field); a row with none of the fields gives no text."""
    bad: Counter = Counter()
    if path.endswith(".parquet"):
        problem = missing_columns(storage, path, fields)
        if problem:
            raise ValueError(problem)
        fs, inner = storage.filesystem(path)
        rows = pq.read_table(inner, filesystem=fs, columns=fields).to_pylist()
    else:
        rows = []
        for line in io.TextIOWrapper(io.BytesIO(storage.read_bytes(path)), encoding="utf-8", errors="replace"):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad["not_json"] += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad["not_an_object"] += 1
    texts = [t for t in (_joined(row, fields, bad) for row in rows) if t is not None]
    return texts, bad
