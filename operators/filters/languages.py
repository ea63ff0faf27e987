"""Language codes as FineWeb2 names them (ISO 639-3 + ISO 15924 script: ``deu_Latn``) and its per-language configs.

A fastText LID label is either already such a code (GlotLID: ``__label__deu_Latn``) or a lid.176 code
(``de``, ``als``), which :func:`code` maps through FineWeb2's tokenizer table (the ISO 639-1 code's default
ISO 639-3 language, a few Wikipedia codes by hand) and gives the script the text is written in, among the
scripts the table lists for that language. :func:`language_config` reads FineWeb2's per-language filter
thresholds (``operators/fineweb2/configs``, or another folder of files in that format).
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache

import numpy as np
import regex
import yaml

from operators.io.layout import LANGUAGE_CODE

FINEWEB2 = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fineweb2")
CONFIGS = os.path.join(FINEWEB2, "configs")
TABLE = os.path.join(FINEWEB2, "tokenizer_assignment.csv")

# lid.176 labels that are Wikipedia codes, not the ISO code of the same language (its ``als`` is Alemannic,
# ISO 639-3 ``als`` is Tosk Albanian); and ISO 639-1 codes without a default row in FineWeb2's table
_WIKIPEDIA = {"als": "gsw", "sh": "hbs", "no": "nob", "tl": "fil", "bh": "bho"}

# ISO 15924 codes -> the Unicode scripts whose letters count for it (scripts not named here are never told
# from the text; the table's default script is taken)
_SCRIPTS = {
    "Latn": "Latin", "Cyrl": "Cyrillic", "Arab": "Arabic", "Grek": "Greek", "Hebr": "Hebrew", "Hani": "Han",
    "Hans": "Han", "Hant": "Han", "Jpan": "Han Hiragana Katakana", "Hira": "Hiragana", "Kana": "Katakana",
    "Hang": "Hangul", "Kore": "Hangul Han", "Deva": "Devanagari", "Beng": "Bengali", "Guru": "Gurmukhi",
    "Gujr": "Gujarati", "Orya": "Oriya", "Taml": "Tamil", "Telu": "Telugu", "Knda": "Kannada", "Mlym": "Malayalam",
    "Sinh": "Sinhala", "Thai": "Thai", "Laoo": "Lao", "Khmr": "Khmer", "Mymr": "Myanmar", "Tibt": "Tibetan",
    "Geor": "Georgian", "Armn": "Armenian", "Ethi": "Ethiopic", "Syrc": "Syriac", "Thaa": "Thaana",
    "Mong": "Mongolian", "Tfng": "Tifinagh", "Cher": "Cherokee", "Cans": "Canadian_Aboriginal",
    "Copt": "Coptic", "Goth": "Gothic", "Nkoo": "Nko", "Vaii": "Vai", "Bopo": "Bopomofo",
}


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, str]]:
    """(ISO 639-1 -> its default 639-3 code, 639-3 code -> scripts listed, 639-3 code -> default script)."""
    default_3: dict[str, str] = {}
    scripts: dict[str, list[str]] = {}
    default_script: dict[str, str] = {}
    with open(TABLE, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            code_3, script = row["code_3"], row["script"]
            scripts.setdefault(code_3, []).append(script)
            if row["default_script"] == "TRUE":
                default_script.setdefault(code_3, script)
            if row["code_1"] and row["default_code_1"] == "TRUE":
                default_3.setdefault(row["code_1"], code_3)
    return default_3, {k: tuple(v) for k, v in scripts.items()}, default_script


@lru_cache(maxsize=64)
def _script_pattern(script: str):
    names = _SCRIPTS.get(script)
    return regex.compile("|".join(rf"\p{{Script={n}}}" for n in names.split())) if names else None


def _letters(text: str, script: str, seen: dict[str, int]) -> int:
    """Letters of ``script`` in ``text``, counted once per text and script (``seen`` holds this text's counts)."""
    if script not in seen:
        pattern = _script_pattern(script)
        seen[script] = len(pattern.findall(text)) if pattern else 0
    return seen[script]


def code(label: str, text: str = "", seen: dict[str, int] | None = None) -> str:
    """The FineWeb2 code (``deu_Latn``) of a LID label: a GlotLID label as it is, a lid.176 code mapped, its
    script the one of the language's scripts with most letters in ``text`` (the table's default on a tie).
    ``seen``: the script letter counts of ``text`` so far, shared by the calls for several labels of one text."""
    label = label.removeprefix("__label__")
    if LANGUAGE_CODE.fullmatch(label):
        return label
    default_3, scripts, default_script = _table()
    code_3 = _WIKIPEDIA.get(label) or default_3.get(label) or label
    options = scripts.get(code_3, ())
    if not options:  # not a language the table knows: left as it is
        return label
    default = default_script.get(code_3) or options[0]
    if len(options) > 1 and text:
        seen = {} if seen is None else seen
        counts = {s: _letters(text, s, seen) for s in options}
        best = max(counts.values())
        if best and counts.get(default, 0) < best:
            default = next(s for s in options if counts[s] == best)
    return f"{code_3}_{default}"


def rows_by_language(languages) -> list[tuple[str | None, np.ndarray]]:
    """Row indices per language of a ``language`` column (Arrow or list), in order of first appearance."""
    groups: dict[str | None, list[int]] = {}
    for i, language in enumerate(languages.to_pylist() if hasattr(languages, "to_pylist") else languages):
        groups.setdefault(language, []).append(i)
    return [(language, np.array(rows, dtype=np.int64)) for language, rows in groups.items()]


@lru_cache(maxsize=1024)
def normalise(language: str) -> str:
    """A code a recipe may write (``de``, ``deu``, ``deu_Latn``) as FineWeb2 writes it."""
    return code(language)


@lru_cache(maxsize=2048)
def language_config(language: str, folder: str = CONFIGS) -> dict | None:
    """FineWeb2's settings for ``language`` (``<folder>/<language>.yml``), or None without a file."""
    if not LANGUAGE_CODE.fullmatch(language or ""):
        return None
    path = os.path.join(folder, f"{language}.yml")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def configs_folder(name: str) -> str:
    """The folder a ``language_configs`` value names: ``fineweb2`` (shipped) or a local folder."""
    folder = CONFIGS if name == "fineweb2" else name
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"language_configs: {name} is not a folder (or 'fineweb2', the shipped configs)")
    return folder
