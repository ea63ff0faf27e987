"""The fineweb recipe on real Common Crawl-style pages from ../shared/data: invariants, nothing lost."""

from __future__ import annotations

import re

import pyarrow.dataset as pads
import pytest

from jobs.curate import run
from jobs.curate.recipe import load_recipe
from operators.filters.pii import EMAIL
from tests.conftest import ROOT

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")


@pytest.mark.slow
def test_fineweb_recipe_on_real_pages_accounts_for_every_record(tmp_path, shared_data, ray_local):
    recipe = load_recipe(RECIPE, [f"input.paths={shared_data}/real-pages-dev.warc.gz",
                                  f"output.root={tmp_path}"])
    stats = run(recipe)
    kept = pads.dataset(f"{tmp_path}/fineweb/filter", format="parquet").to_table()
    dropped = pads.dataset(f"{tmp_path}/fineweb/rejected", format="parquet").to_table()

    assert stats["read"]["read.response"] == 314
    assert kept.num_rows + dropped.num_rows == 314
    assert len(set(kept.column("id").to_pylist() + dropped.column("id").to_pylist())) == 314
    assert 20 <= kept.num_rows <= 200
    assert set(kept.column("language").to_pylist()) == {"eng_Latn"}
    assert min(kept.column("language_score").to_pylist()) >= 0.65
    steps = [name for name, _ in recipe.steps]
    for reason in dropped.column("filter_reason").to_pylist():
        op, _, rule = reason.partition(".")
        assert op in steps and re.fullmatch(r"[a-z0-9_]+", rule), reason
    found = {m for t in kept.column("text").to_pylist() for m in re.findall(EMAIL, t)}
    assert found <= {"email@example.com"}
    ops = stats["operators"]
    assert ops["url"]["in"] == 314 and ops["pii"]["out"] == kept.num_rows
    for name in steps[1:]:
        assert ops[name]["in"] == ops[steps[steps.index(name) - 1]]["out"], name
    assert sum(sum(o["dropped"].values()) for o in ops.values()) == dropped.num_rows
