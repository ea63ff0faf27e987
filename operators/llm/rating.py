"""LLM quality ratings: the columns each rating kind adds, and conservative parsing of the answers.

A kind is the name of its prompt (``operators/llm/prompts/<kind>.yaml``). Model output is data: it is
matched line by line, never evaluated. Score lines may sit anywhere (the prompts ask for them last):
prose around them, and numbers outside them, are ignored. An answer that cannot be read with certainty
gives null values and a reason, counted by the caller, and never a guessed score. Reasons, the first
that applies:

* ``rating.missing``: no score line (no ``Educational score: N``; no DataMan line at all);
* ``rating.incomplete``: some DataMan lines (criteria, ``Overall``, ``Domain``) are missing;
* ``rating.ambiguous``: one score given twice with different values, or as a range (``3-4``, ``3 or 4``);
* ``rating.out_of_range``: a score outside its scale (``6``, ``-1``, ``2.5``, ``3/10``);
* ``rating.bad_domain``: a DataMan domain that is not one of its letters A-O.
"""

from __future__ import annotations

import re

import pyarrow as pa

DATAMAN_CRITERIA = ("Accuracy", "Coherence", "Language Consistency", "Semantic Density", "Knowledge Novelty",
                    "Topic Focus", "Creativity", "Professionalism", "Style Consistency", "Grammatical Diversity",
                    "Structural Standardization", "Originality", "Sensitivity")
DATAMAN_DOMAINS = {"A": "Medicine", "B": "Finance", "C": "Law", "D": "Education", "E": "Technology",
                   "F": "Entertainment", "G": "Mathematics", "H": "Coding", "I": "Government", "J": "Culture",
                   "K": "Transportation", "L": "Retail E-commerce", "M": "Telecommunication", "N": "Agriculture",
                   "O": "Other"}


def _column(name: str) -> str:
    return "dataman_" + name.lower().replace(" ", "_")


COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "fineweb_edu_rating": [("llm_edu_score", pa.int8())],
    "dataman_rating": [(_column(c), pa.int8()) for c in DATAMAN_CRITERIA]
    + [("dataman_overall", pa.int8()), ("dataman_domain", pa.string())],
}
KINDS = tuple(COLUMNS)

_MARKUP = re.compile(r"[*`#]|(?<!\w)_+|_+(?!\w)")
_LIST_MARK = re.compile(r"^\s*(?:[-+>•]\s*|\[\d+\]\s*|\d+[.)]\s*)?")
# A score right after its label: "3", "3.0", "(3)", "3/5", "3 out of 5", then anything but a second number.
_VALUE = re.compile(r"\s*[\[(]?\s*(?P<num>[-+]?\d+(?:\.\d+)?)\s*[\])]?"
                    r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?))?"
                    r"(?P<alt>\s*(?:[-–—~,;+=×]|\bto\b|\bor\b|\band\b)\s*[-+]?\d)?", re.IGNORECASE)
_EDU_LABEL = re.compile(r"educational\s+score\s*:", re.IGNORECASE)
_DATAMAN_LABELS = [(_column(c), re.compile(r"[\s_-]+".join(c.split()) + r"\s*:", re.IGNORECASE))
                   for c in DATAMAN_CRITERIA] + [("dataman_overall", re.compile(r"overall(?:\s+score)?\s*:", re.I))]
_DOMAIN_LABEL = re.compile(r"domain(?:\s+type)?\s*:\s*(?P<value>.*)$", re.IGNORECASE)
_DOMAIN_VALUE = re.compile(r"\[?(?P<letter>[A-Z])\]?(?:(?:\s*[-–:(]\s*|\s+)(?P<name>[A-Za-z][A-Za-z -]*?)\s*\)?)?\.?")
_ORDER = ("rating.missing", "rating.incomplete", "rating.ambiguous", "rating.out_of_range", "rating.bad_domain")


def _lines(text: str) -> list[str]:
    return [_MARKUP.sub("", line).strip() for line in (text or "").splitlines()]


def _score(rest: str, low: int, high: int) -> int | str | None:
    """The score right after a label: an int, a reason, or None when no number follows the label."""
    m = _VALUE.match(rest)
    if not m:
        return None
    if m["alt"]:
        return "rating.ambiguous"
    num = float(m["num"])
    if (m["den"] and float(m["den"]) != 5) or num != int(num) or not low <= num <= high:
        return "rating.out_of_range"
    return int(num)


def _agree(found: list[int | str]) -> int | str | None:
    """One value from all the lines that gave one (None if none did)."""
    if len(set(found)) > 1:
        return "rating.ambiguous"
    return found[0] if found else None


def _parse_edu(text: str) -> tuple[dict | None, str | None]:
    found = [s for line in _lines(text) for m in _EDU_LABEL.finditer(line)
             if (s := _score(line[m.end():], 0, 5)) is not None]
    value = _agree(found)
    if value is None:
        return None, "rating.missing"
    if isinstance(value, str):
        return None, value
    return {"llm_edu_score": value}, None


def _domain(value: str) -> str:
    """The domain's name, from its letter (or its name), or ``rating.bad_domain``."""
    by_name = {n.lower(): n for n in DATAMAN_DOMAINS.values()}
    if (name := by_name.get(value.strip().rstrip(".").lower())) is not None:
        return name
    m = _DOMAIN_VALUE.fullmatch(value.strip())
    if not m or m["letter"] not in DATAMAN_DOMAINS:
        return "rating.bad_domain"
    name = DATAMAN_DOMAINS[m["letter"]]
    if m["name"] and m["name"].strip().lower() != name.lower():
        return "rating.bad_domain"
    return name


def _parse_dataman(text: str) -> tuple[dict | None, str | None]:
    found: dict[str, list] = {column: [] for column, _ in _DATAMAN_LABELS + [("dataman_domain", None)]}
    for line in _lines(text):
        line = _LIST_MARK.sub("", line, count=1)
        if m := _DOMAIN_LABEL.match(line):
            found["dataman_domain"].append(_domain(m["value"]))
            continue
        for column, label in _DATAMAN_LABELS:
            if (m := label.match(line)) and (s := _score(line[m.end():], 1, 5)) is not None:
                found[column].append(s)
    values = {column: _agree(v) for column, v in found.items()}
    if all(v is None for v in values.values()):
        return None, "rating.missing"
    reasons = {"rating.incomplete" if v is None else v for v in values.values() if v is None or v in _ORDER}
    if reasons:
        return None, min(reasons, key=_ORDER.index)
    return values, None


_PARSERS = {"fineweb_edu_rating": _parse_edu, "dataman_rating": _parse_dataman}


def parse(kind: str, text: str) -> tuple[dict | None, str | None]:
    """``(values by column, None)`` for a readable answer, else ``(None, reason)``."""
    if kind not in _PARSERS:
        raise ValueError(f"unknown rating kind {kind!r}; known: {', '.join(KINDS)}")
    return _PARSERS[kind](text)


def schema(kind: str) -> pa.Schema:
    """The columns a kind adds, then ``rating_reason`` (null when the answer was read)."""
    return pa.schema(COLUMNS[kind] + [("rating_reason", pa.string())])


def to_table(kind: str, results: list[tuple[dict | None, str | None]]) -> pa.Table:
    """Parsed results, in order, as a table of ``schema(kind)``; unreadable answers give null values."""
    columns = {name: pa.array([values[name] if values else None for values, _ in results], type_)
               for name, type_ in COLUMNS[kind]}
    return pa.table({**columns, "rating_reason": pa.array([r for _, r in results], pa.string())},
                    schema=schema(kind))
