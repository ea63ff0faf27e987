"""Recipe validation: unknown keys and bad values fail at start-up naming the key; --set overrides."""

import pytest

from jobs.config import apply_override, load_recipe
from jobs.curate import check_columns
from tests.conftest import ROOT

FINEWEB = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")
DCLM = str(ROOT / "jobs" / "recipes" / "dclm.yaml")


def test_shipped_recipes_validate_and_fineweb_keeps_the_published_order():
    fineweb = load_recipe(FINEWEB)
    assert [name for name, _ in fineweb.steps] == [
        "url", "extract", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality", "pii"]
    assert fineweb.operator_params("language") == {"languages": ["en"], "threshold": 0.65, "model": None}
    assert fineweb.operator_params("c4")["filter_no_terminal_punct"] is False
    check_columns(fineweb)
    check_columns(load_recipe(DCLM))


@pytest.mark.parametrize("override, named", [
    ("inptu.limit=2", "inptu"),
    ("input.limt=2", "input.limt"),
    ("input.limit=0", "input.limit"),
    ("input.shards=1-2", "input.shards"),
    ("mode=drop", "mode"),
    ("pipeline.language.threshold=1.5", "pipeline.language.threshold"),
    ("pipeline.gopher_quality.min_stop_wrds=3", "pipeline.gopher_quality.min_stop_wrds"),
    ("pipeline.extract.engine=lynx", "pipeline.extract.engine"),
])
def test_bad_keys_and_values_are_named(override, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        load_recipe(FINEWEB, [override])


def test_overrides_reach_nested_keys_and_pipeline_steps():
    recipe = load_recipe(FINEWEB, ["input.crawl=CC-MAIN-2024-22", "input.limit=2", "input.shards=3:",
                                   "pipeline.language.threshold=0.7", "pipeline.1.engine=trafilatura",
                                   "input.paths=s3://b/a/*.warc.gz"])
    assert (recipe.input.crawl, recipe.input.limit, recipe.input.shards) == ("CC-MAIN-2024-22", 2, "3:")
    assert recipe.input.paths == ["s3://b/a/*.warc.gz"]
    assert recipe.operator_params("language")["threshold"] == 0.7
    assert recipe.operator_params("extract")["engine"] == "trafilatura"


def test_override_errors():
    with pytest.raises(ValueError, match="no pipeline step named 'dedup'"):
        load_recipe(FINEWEB, ["pipeline.dedup.x=1"])
    with pytest.raises(ValueError, match="expected key=value"):
        apply_override({}, "input.limit")


def test_pipeline_must_extract_and_know_its_operators(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\npipeline:\n  - language: {}\n")
    with pytest.raises(ValueError, match="'extract' step is required"):
        load_recipe(str(path))
    path.write_text("name: r\npipeline:\n  - extract: {}\n  - minhash: {}\n")
    with pytest.raises(ValueError, match="unknown operator 'minhash'"):
        load_recipe(str(path))


def test_column_check_names_the_step_that_lacks_its_input(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\npipeline:\n  - language: {}\n  - extract: {}\n")
    with pytest.raises(ValueError, match=r"pipeline\.language needs column\(s\) \['text'\]"):
        check_columns(load_recipe(str(path)))
