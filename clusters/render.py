"""Render the cluster configs: clusters/templates filled from clusters/values.yaml into clusters/build.

    python -m clusters.render [--values clusters/values.yaml] [--out clusters/build] [--target aws]

A template is YAML whose strings hold ``${dotted.name}`` placeholders for values.yaml keys. A string that is
one placeholder becomes the value itself (a number, a list, a mapping); inside longer text a value is written
as text (lists and mappings as JSON). A mapping entry or list item that is one placeholder for a null value
is left out: that is how optional values work. A value that is missing, null inside text, or still holds
``CHANGE-ME`` is unset: nothing is written, and the error names every unset value the templates use.
Besides values.yaml, templates see ``checkout`` (this checkout's absolute path), ``ray_version`` (the Ray
installed here) and, for a fragment ``_<name>.yaml`` beside them, ``_<name>``: its rendered content
(fragments are not written themselves). A target is a template file or folder: ``aws``, ``kuberay``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "clusters" / "templates"
UNSET = "CHANGE-ME"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_LEAVE_OUT = object()


def _holds_unset(value: Any) -> bool:
    if isinstance(value, str):
        return UNSET in value
    if isinstance(value, dict):
        return any(map(_holds_unset, value.values()))
    if isinstance(value, list):
        return any(map(_holds_unset, value))
    return False


class _Filler:
    """Fills placeholders from ``values``, collecting the names of unset ones."""

    def __init__(self, values: dict):
        self.values = values
        self.fragments: dict[str, Any] = {}
        self.unset: set[str] = set()

    def fill(self, node: Any) -> Any:
        if isinstance(node, dict):
            filled = {key: self.fill(value) for key, value in node.items()}
            return {key: value for key, value in filled.items() if value is not _LEAVE_OUT}
        if isinstance(node, list):
            return [item for item in map(self.fill, node) if item is not _LEAVE_OUT]
        if not isinstance(node, str):
            return node
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            value = self._value(whole[1], in_text=False)
            return _LEAVE_OUT if value is None else value
        return PLACEHOLDER.sub(lambda match: self._text(match[1]), node)

    def _value(self, name: str, in_text: bool) -> Any:
        if name in self.fragments:  # already filled: its unset values are named
            return self.fragments[name]
        node: Any = self.values
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                self.unset.add(name)
                return None
            node = node[part]
        if _holds_unset(node) or (in_text and node is None):
            self.unset.add(name)
        return node

    def _text(self, name: str) -> str:
        value = self._value(name, in_text=True)
        return value if isinstance(value, str) else json.dumps(value)


def _load(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


def render(values_path: Path, out: Path, targets: list[str] | None = None, templates: Path = TEMPLATES) -> list[Path]:
    """Write the filled templates of ``targets`` (default: all) under ``out``; return the paths written.

    Raises ValueError naming every unset value (nothing is written then) or an unknown target.
    """
    values = _load(values_path)
    if not isinstance(values, dict):
        raise ValueError(f"{values_path}: must be a mapping of names to values")
    known = {path.stem if path.is_file() else path.name: path for path in templates.iterdir()
             if path.suffix == ".yaml" or path.is_dir()}
    chosen = targets or sorted(known)
    wrong = [target for target in chosen if target not in known]
    if wrong:
        raise ValueError(f"unknown target {', '.join(wrong)}; known: {', '.join(sorted(known))}")
    filler = _Filler({**values, "checkout": str(ROOT), "ray_version": version("ray")})
    docs: dict[Path, Any] = {}
    for target in chosen:
        files = sorted(known[target].rglob("*.yaml")) if known[target].is_dir() else [known[target]]
        for fragment in (f for f in files if f.name.startswith("_")):
            filler.fragments[fragment.stem] = filler.fill(_load(fragment))
        docs.update({f: filler.fill(_load(f)) for f in files if not f.name.startswith("_")})
    if filler.unset:
        raise ValueError(f"{values_path}: set {', '.join(sorted(filler.unset))} (missing, or still {UNSET})")
    written = []
    for template, doc in docs.items():
        path = out / template.relative_to(templates)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = f"# Written by `python -m clusters.render` from {template.relative_to(templates.parent)}"
        path.write_text(f"{header} and the values; edit those.\n" + yaml.safe_dump(doc, sort_keys=False, width=1000))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusters.render", description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, default=ROOT / "clusters" / "values.yaml",
                        help="default: clusters/values.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "clusters" / "build", help="default: clusters/build")
    parser.add_argument("--target", action="append", help="aws or kuberay (repeatable); default: all")
    args = parser.parse_args(argv)
    try:
        written = render(args.values, args.out, args.target)
    except (ValueError, OSError, yaml.YAMLError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print("wrote " + " ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
