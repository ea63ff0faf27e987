"""Error lines for recipes: the key a recipe writes, and for an unknown key the nearest known one.

Hand-written because pydantic names a key as its validator walked it (union members included) and never
suggests one: the recipe's models are walked along pydantic's error location to the fields that were
possible there, and difflib picks the nearest (``pipeline.language.treshold: unknown key; did you mean
threshold?``).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def problem(error: dict, model: type[BaseModel] | None = None, prefix: str = "") -> str:
    """``key: message`` for one pydantic error (messages that already name their key are kept as is). With
    the ``model`` validated, the key is the one a recipe writes (less the union member pydantic tried),
    and an unknown key comes with the nearest known one: ``unknown key; did you mean x?``."""
    kinds, loc = _walk(model, error["loc"][:-1])[0], _walk(model, error["loc"])[1]
    key = ".".join([prefix] * bool(prefix) + list(map(str, loc)))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc:
        known = _fields(kinds)
        message = "unknown key" + (f"; {nearest(str(loc[-1]), known) or 'known keys: ' + ', '.join(known)}"
                                   if known else "")
    return message if not key or message.startswith((f"{key}.", f"{key}:", f"{key}[")) else f"{key}: {message}"


def nearest(name: str, known) -> str:
    """``did you mean x?`` for the nearest of ``known`` to ``name``, or ``""``."""
    near = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {near[0]}?" if near else ""


def suggest(name: str, known) -> str:
    near = nearest(name, known)
    return f"; {near}" if near else ""


def _walk(model: type[BaseModel] | None, loc: tuple) -> tuple[list, list]:
    """(the types the value at ``loc`` under ``model`` may have, ``loc`` less the union members pydantic put
    in it): followed through nested models, lists and tuples (an index), dicts (a key), and unions. Pydantic
    names the member of a union it tried: by discriminator value (the member the recipe chose, so the only
    one kept) or by class name (each member in turn, so all are kept, and each member's error says the same).
    Types are empty where ``loc`` leads nowhere."""
    if model is None:
        return [], list(loc)
    kinds, path = _alternatives(model), []
    for part in loc:
        below = [a for k in kinds for a in _alternatives(_member(k, part))]
        if not below and isinstance(part, str) and any(getattr(k, "__name__", None) == part for k in kinds):
            continue
        chosen = [k for k in kinds if isinstance(part, str) and _discriminated(k, part)]
        if not below and chosen:
            kinds = chosen
            continue
        kinds = below
        path.append(part)
    return kinds, path


def _discriminated(kind, tag: str) -> bool:
    """Whether model ``kind`` has a Literal field that admits ``tag`` (its discriminator value)."""
    return isinstance(kind, type) and issubclass(kind, BaseModel) and any(
        get_origin(f.annotation) is Literal and tag in get_args(f.annotation) for f in kind.model_fields.values())


def _fields(kinds: list) -> list[str]:
    """The field names (and aliases) of the models among ``kinds``."""
    names: dict[str, None] = {}
    for kind in kinds:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for field_name, field in kind.model_fields.items():
                names.update({n: None for n in (field.alias, field_name) if n})
    return list(names)


def _alternatives(annotation) -> list:
    """The types ``annotation`` may be: its union members less None, its ``Annotated`` type."""
    if annotation is None:
        return []
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [a for arg in get_args(annotation) if arg is not type(None) for a in _alternatives(arg)]
    return [annotation]


def _member(kind, part):
    """The type of ``kind``'s field, item or value at ``part``, or None."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        if not isinstance(part, str):
            return None
        field = kind.model_fields.get(part) or next(
            (f for f in kind.model_fields.values() if f.alias == part), None)
        return field.annotation if field is not None else None
    origin, args = get_origin(kind), get_args(kind)
    if origin is None or not args:
        return None
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return args[-1]
    if isinstance(part, int) and isinstance(origin, type) and issubclass(origin, Sequence | set | frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return args[part] if part < len(args) else None
        return args[0]
    return None
