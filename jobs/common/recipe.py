"""Recipe loading for every job: YAML validated by pydantic; unknown keys and bad values fail at start-up.

``--set a.b=c`` overrides a key before validation; the value is parsed as YAML. Inside a curation
``pipeline`` an operator is addressed by name (``pipeline.language.threshold=0.7``) or index. The blocks
several jobs' recipes share (``storage``, ``ray``, Parquet compression) live here too.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from jobs.common.recipe_errors import problem, suggest
from operators.params import Strict

Compression = Literal["zstd", "snappy", "gzip", "none"]  # Parquet codecs, as pyarrow names them


def job_field(name: str):
    """The recipe's optional ``job`` key: which job it is for (``python -m jobs`` reads it; another value fails)."""
    return Field(name, description=f"the job this recipe is for: {name}")


class StorageConfig(Strict):
    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool | None = Field(None, description="default: anonymous for s3://commoncrawl only")
    retries: int = Field(5, ge=0, description="per request, and re-opens of a dropped input stream at its offset")
    retry_backoff_s: float = Field(1.0, ge=0, description="first wait before re-opening a stream; doubles each time")


class RayCluster(Strict):
    """Which Ray to use: every job has these."""

    address: str | None = Field(None, description="default: RAY_ADDRESS, else a local Ray")
    num_cpus: float | None = Field(None, gt=0, description="CPUs of a local Ray; default: the machine's")
    dashboard: bool = Field(False, description="start a local Ray's dashboard too (about 0.7 s more start-up)")


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``a.b=c`` override to the raw recipe dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {assignment!r}: expected key=value")
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]))
    parent = ".".join(parts[:-1])
    if isinstance(node, list) and parent == "pipeline":
        raise ValueError(f"--set {key}: cannot replace a pipeline step whole; set one of its parameters")
    if not isinstance(node, dict):
        raise ValueError(f"--set {key}: {parent} is not a mapping")
    node[parts[-1]] = parse_value(value, key)


def parse_value(text: str, key: str = "value") -> Any:
    """A ``--set`` value as YAML, except that ``a:b`` stays a string (YAML would read ``1:3`` as 63); one
    that is not YAML fails naming ``key``."""
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {key}: not valid YAML{yaml_problem(err)}") from None
    if ":" in text and not isinstance(value, str) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def _child(node: Any, part: str, where: str) -> Any:
    parent = where.rpartition(".")[0]
    if isinstance(node, list) and parent == "pipeline":
        return _step_params(node, part, where)
    if isinstance(node, list):
        return _item(node, part, where)
    if not isinstance(node, dict):
        raise ValueError(f"--set {where}: {parent} is not a mapping")
    return node.setdefault(part, {})


def _step_params(steps: list, part: str, where: str) -> Any:
    """The parameters of the pipeline step named or numbered ``part`` (a null becomes ``{}``)."""
    if re.fullmatch(r"\d+", part):
        if int(part) >= len(steps):
            raise ValueError(f"--set {where}: there are {len(steps)} pipeline steps")
        step = steps[int(part)]
    else:
        step = next((s for s in steps if isinstance(s, dict) and part in s), None)
        if step is None:
            names = [next(iter(s)) for s in steps if isinstance(s, dict) and len(s) == 1]
            raise ValueError(f"--set {where}: no pipeline step named {part!r}{suggest(part, names)}")
    if not isinstance(step, dict) or len(step) != 1:
        raise ValueError(f"--set {where}: the step is not one operator name mapped to its parameters")
    name = next(iter(step))
    if step[name] is None:
        step[name] = {}
    return step[name]


def _item(items: list, part: str, where: str) -> Any:
    """The list item numbered ``part``, or the mapping whose ``name`` is ``part`` (``classifiers.fineweb_edu``)."""
    if re.fullmatch(r"\d+", part):
        if int(part) >= len(items):
            raise ValueError(f"--set {where}: there are {len(items)} items")
        return items[int(part)]
    item = next((i for i in items if isinstance(i, dict) and i.get("name") == part), None)
    if item is None:
        names = [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)]
        raise ValueError(f"--set {where}: no item named {part!r}{suggest(part, names)}")
    return item


def read_recipe(path: str, key: str = "--config") -> dict:
    """The raw recipe at ``path`` (named ``key`` in messages); a missing file is named with the nearest
    file beside it, in one line (``--config: x/finewbe.yaml does not exist; did you mean x/fineweb.yaml?``)."""
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise ValueError(f"{key}: {path} is a folder, not a recipe file")
        folder, name = os.path.split(path)
        here = folder or "."
        siblings = [n for n in os.listdir(here) if os.path.isfile(os.path.join(here, n))] if os.path.isdir(here) else []
        near = difflib.get_close_matches(name, siblings, n=1)
        hint = f"; did you mean {os.path.join(folder, near[0])}?" if near else ""
        raise FileNotFoundError(f"{key}: {path} does not exist{hint}")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f"{key}: {path} is not valid YAML{yaml_problem(err)}") from None
    except OSError as err:
        raise ValueError(f"{key}: cannot read {path}: {err.strerror or err}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        kind = "list" if isinstance(raw, list) else "scalar"
        raise ValueError(f"{path}: a recipe must be a mapping of keys to values, not a YAML {kind}")
    return raw


def yaml_problem(err: yaml.YAMLError) -> str:
    """Where PyYAML found a problem and what it is, in one line: `` (line 3, column 7): expected ',' or ']'``."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{where}: " + " ".join(str(getattr(err, "problem", None) or err).split())


def load_model(model: type[BaseModel], path: str, overrides: list[str] = (), key: str = "--config"):
    """Read a YAML file, apply ``--set`` overrides, validate with ``model``; one error line naming each key."""
    raw = read_recipe(path, key)
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ValueError("; ".join(dict.fromkeys(problem(e, model) for e in err.errors()))) from None
