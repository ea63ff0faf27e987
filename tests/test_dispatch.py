"""``python -m jobs``: a recipe's ``job`` key picks its job; a recipe without one is matched by its keys."""

from __future__ import annotations

import pytest
import yaml

from jobs.dispatch import JOBS, job_for, main, recipe_model
from tests.conftest import ROOT

RECIPES = ROOT / "jobs" / "recipes"
SHIPPED = {"dclm.yaml": "curate", "fineweb.yaml": "curate", "fineweb2.yaml": "curate", "dedup.yaml": "dedup",
           "dedup-fineweb2.yaml": "dedup", "quality.yaml": "classify",
           "quality-cpu.yaml": "classify", "quality-llm.yaml": "classify", "prox.yaml": "synthesize",
           "rephrase-nemotron.yaml": "synthesize", "rephrase-wrap.yaml": "synthesize", "rewire.yaml": "synthesize",
           "tpt.yaml": "synthesize", "mixture.yaml": "pipeline", "mixture-cpu.yaml": "pipeline",
           "schedule.yaml": "sentinel", "decontaminate.yaml": "decontaminate", "export.yaml": "export"}


def _copy(tmp_path, name: str, **changes) -> str:
    raw = yaml.safe_load((RECIPES / name).read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_every_shipped_job_recipe_names_its_job_and_is_valid_for_it():
    shipped = {p.name for p in RECIPES.glob("*.yaml")} - {"plan.yaml"}  # the planner's settings, not a job recipe
    assert shipped == set(SHIPPED)
    for name, job in SHIPPED.items():
        assert yaml.safe_load((RECIPES / name).read_text())["job"] == job, name
        assert job_for(str(RECIPES / name)) == job
        recipe_model(job).model_validate(yaml.safe_load((RECIPES / name).read_text()))
    assert set(JOBS) == set(SHIPPED.values())


def test_without_a_job_key_the_keys_tell_even_with_a_misspelt_one(tmp_path):
    assert job_for(_copy(tmp_path, "fineweb.yaml", job=None)) == "curate"
    assert job_for(_copy(tmp_path, "dedup.yaml", job=None, minhsh={"bands": 2})) == "dedup"
    assert job_for(_copy(tmp_path, "mixture.yaml", job=None)) == "pipeline"


def test_a_wrong_job_key_stops_naming_it(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"job: 'curation' is not a job; the jobs are curate, dedup, classify"):
        job_for(_copy(tmp_path, "fineweb.yaml", job="curation"))
    assert main(["--config", _copy(tmp_path, "fineweb.yaml", job="dedup")]) == 2
    err = capsys.readouterr().err  # the named job reads the recipe, and names what is not its own
    assert err.startswith("error: input: Input should be a valid string;") and "; pipeline: unknown key;" in err


def test_no_job_key_and_keys_of_none_names_the_way_out(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("name: odd\nfrobnicate: 1\n")
    with pytest.raises(ValueError, match=r"cannot tell which job it is for .*name it with a job key \(job: curate\)"):
        job_for(str(path))
