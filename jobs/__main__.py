"""Run whichever job a recipe is for: ``python -m jobs --config <recipe> [--input X] [--output Y] [--set K=V]``.

The same command line for every job, so ``make run`` / ``make submit`` take any recipe: the job is the
one whose recipe model has every top-level key of the recipe, and ``--input`` / ``--output`` become
that job's own keys (``input.paths`` and ``output.root`` for curation, ``root`` for the pipeline, ...).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys

from jobs.config import read_recipe

# module, recipe model (module:attribute), --input key (a list of paths?), --output key
JOBS = (
    ("jobs.curate", "jobs.config:Recipe", ("input.paths", True), "output.root"),
    ("jobs.dedup", "jobs.dedup:DedupRecipe", ("input", False), "output"),
    ("jobs.classify", "jobs.classify_config:QualityRecipe", ("input", False), "output"),
    ("jobs.synthesize", "jobs.synthesize:SynthRecipe", ("input", False), "output"),
    ("jobs.pipeline", "jobs.pipeline:MixtureRecipe", ("input", True), "root"),
    ("jobs.sentinel", "jobs.sentinel:Schedule", None, "root"),
)


def _model(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def job_for(recipe: str) -> tuple[str, tuple[str, bool] | None, str]:
    """The job (module, input key, output key) whose recipe model has every top-level key of ``recipe``; with
    none, the one whose model has a near key for each of the others (misspelt: that job's validation names them)."""
    keys = set(read_recipe(recipe))
    fields = {module: set(_model(spec).model_fields) for module, spec, *_ in JOBS}
    found = [(module, ikey, okey) for module, _, ikey, okey in JOBS if keys <= fields[module]]
    if not found:
        found = [(module, ikey, okey) for module, _, ikey, okey in JOBS if keys & fields[module] and all(
            difflib.get_close_matches(str(key), fields[module], n=1) for key in keys - fields[module])]
    if len(found) != 1:
        names = ", ".join(m for m, *_ in found) or "none"
        raise ValueError(f"{recipe}: cannot tell which job it is for (top-level keys {sorted(keys)}; matches: {names})")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="recipe YAML (jobs/recipes/*.yaml)")
    parser.add_argument("--input", help="the job's input (paths, globs, s3:// URIs; comma-separated for several)")
    parser.add_argument("--output", help="the job's output folder or root")
    args, rest = parser.parse_known_args(argv)
    try:
        module, ikey, okey = job_for(args.config)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sets = []
    if args.input:
        if ikey is None:
            print(f"error: {module} takes no --input", file=sys.stderr)
            return 2
        key, many = ikey
        sets += ["--set", f"{key}={json.dumps(args.input.split(',')) if many else args.input}"]
    if args.output:
        sets += ["--set", f"{okey}={args.output}"]
    return importlib.import_module(module).main(["--config", args.config, *sets, *rest])


if __name__ == "__main__":
    sys.exit(main())
