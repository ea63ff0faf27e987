"""Which recipe is for which job: ``python -m jobs --config <recipe> [--input X] [--output Y] [--set K=V]``.

The same command line for every job, so ``make run`` / ``make submit`` take any recipe. A recipe names its
job (``job: curate``); one that does not is for the job whose recipe model has every top-level key of it.
``--input`` / ``--output`` become that job's own keys (``input.paths`` and ``output.root`` for curation,
``root`` for the pipeline, ...). Jobs are imported by name, only when chosen.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from typing import NamedTuple

from jobs.common.recipe import read_recipe


class Job(NamedTuple):
    module: str  # python -m <module>
    model: str  # its recipe model, module:attribute
    input: tuple[str, bool] | None  # the key --input sets, and whether it is a list of paths
    output: str  # the key --output sets


JOBS = {
    "curate": Job("jobs.curate", "jobs.curate.recipe:Recipe", ("input.paths", True), "output.root"),
    "dedup": Job("jobs.dedup", "jobs.dedup.recipe:DedupRecipe", ("input", False), "output"),
    "classify": Job("jobs.classify", "jobs.classify.recipe:QualityRecipe", ("input", False), "output"),
    "synthesize": Job("jobs.synthesize", "jobs.synthesize.recipe:SynthRecipe", ("input", False), "output"),
    "decontaminate": Job("jobs.decontaminate", "jobs.decontaminate.recipe:DecontamRecipe", ("input", False), "output"),
    "export": Job("jobs.export", "jobs.export.recipe:ExportRecipe", ("input", False), "output"),
    "pipeline": Job("jobs.pipeline", "jobs.pipeline.recipe:MixtureRecipe", ("input", True), "root"),
    "sentinel": Job("jobs.sentinel", "jobs.sentinel.job:Schedule", None, "root"),
}


def recipe_model(job: str):
    """The recipe model (a pydantic class) of ``job``, a key of ``JOBS``."""
    module, name = JOBS[job].model.split(":")
    return getattr(importlib.import_module(module), name)


def job_for(recipe: str, key: str = "--config") -> str:
    """The job ``recipe`` is for: its ``job`` key; without one, the job whose recipe model has every top-level
    key of it; with none, the one whose model has a near key for each of the others (misspelt: that job's
    validation names them)."""
    raw = read_recipe(recipe, key)
    if "job" in raw:
        if raw["job"] not in JOBS:
            raise ValueError(f"{recipe}: job: {raw['job']!r} is not a job; the jobs are {', '.join(JOBS)}")
        return raw["job"]
    keys = set(raw)
    fields = {job: set(recipe_model(job).model_fields) for job in JOBS}
    found = [job for job in JOBS if keys <= fields[job]]
    if not found:
        found = [job for job in JOBS if keys & fields[job] and all(
            difflib.get_close_matches(str(key), fields[job], n=1) for key in keys - fields[job])]
    if len(found) != 1:
        raise ValueError(f"{recipe}: cannot tell which job it is for (top-level keys {sorted(keys)}; matches: "
                         f"{', '.join(found) or 'none'}); name it with a job key (job: curate)")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="recipe YAML (jobs/recipes/*.yaml)")
    parser.add_argument("--input", help="the job's input (paths, globs, s3:// URIs; comma-separated for several)")
    parser.add_argument("--output", help="the job's output folder or root")
    args, rest = parser.parse_known_args(argv)
    try:
        job = JOBS[job_for(args.config)]
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sets = []
    if args.input:
        if job.input is None:
            print(f"error: {job.module} takes no --input", file=sys.stderr)
            return 2
        key, many = job.input
        sets += ["--set", f"{key}={json.dumps(args.input.split(',')) if many else args.input}"]
    if args.output:
        sets += ["--set", f"{job.output}={args.output}"]
    return importlib.import_module(f"{job.module}.job").main(["--config", args.config, *sets, *rest])
