"""Operator names usable in a recipe's ``pipeline``, mapped to their modules (imported on use)."""

from __future__ import annotations

import importlib
import inspect

from operators.base import Operator
from operators.io.storage import Storage

MODULES = {
    "url": "operators.filters.url",
    "extract": "operators.extract.html",
    "language": "operators.filters.language",
    "gopher_repetition": "operators.filters.gopher_repetition",
    "gopher_quality": "operators.filters.gopher_quality",
    "c4": "operators.filters.c4",
    "fineweb_quality": "operators.filters.fineweb_quality",
    "dclm_fasttext": "operators.filters.fasttext_quality",
    "pii": "operators.filters.pii",
    "ftfy": "operators.filters.ftfy_fix",
    "symbol_lines": "operators.filters.symbol_lines",
}


def operator_class(name: str) -> type[Operator]:
    if name not in MODULES:
        raise KeyError(f"unknown operator {name!r}; known: {', '.join(MODULES)}")
    module = importlib.import_module(MODULES[name])
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Operator) and getattr(obj, "name", None) == name:
            return obj
    raise LookupError(f"{MODULES[name]} defines no operator named {name!r}")


def build(name: str, params: dict, storage: Storage) -> Operator:
    """Instantiate operator ``name``; those that read files get the run's storage settings."""
    cls = operator_class(name)
    if "storage" in inspect.signature(cls.__init__).parameters:
        return cls(storage=storage, **params)
    return cls(**params)
