"""Recipe validation: unknown keys and bad values fail at start-up naming the key; --set overrides."""

import io
from typing import get_args

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.classify.recipe import QualityRecipe
from jobs.common.recipe import Compression, apply_override, load_model
from jobs.curate.job import check_columns
from jobs.curate.recipe import Recipe, load_recipe
from jobs.dedup import DedupRecipe
from jobs.synthesize import SynthRecipe
from operators.params import Strict
from tests.conftest import ROOT

FINEWEB = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")
DCLM = str(ROOT / "jobs" / "recipes" / "dclm.yaml")
FINEWEB2 = str(ROOT / "jobs" / "recipes" / "fineweb2.yaml")
DEDUP = str(ROOT / "jobs" / "recipes" / "dedup.yaml")
WRAP = str(ROOT / "jobs" / "recipes" / "rephrase-wrap.yaml")
QUALITY = str(ROOT / "jobs" / "recipes" / "quality.yaml")
QUALITY_LLM = str(ROOT / "jobs" / "recipes" / "quality-llm.yaml")


def test_shipped_recipes_validate_and_fineweb_keeps_the_published_order():
    fineweb = load_recipe(FINEWEB)
    assert [name for name, _ in fineweb.steps] == [
        "url", "extract", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality", "pii"]
    assert fineweb.operator_params("language") == {
        "languages": ["eng_Latn"], "threshold": 0.65, "fallback_threshold": 0.65, "language_configs": "fineweb2",
        "pairs_threshold": 0.01, "model": None, "filename": "model.bin"}
    assert fineweb.operator_params("c4")["filter_no_terminal_punct"] is False
    check_columns(fineweb)
    check_columns(load_recipe(DCLM))
    fineweb2 = load_recipe(FINEWEB2)
    assert [name for name, _ in fineweb2.steps] == [
        "url", "extract", "language", "gopher_repetition", "fineweb_quality", "gopher_quality", "ftfy", "pii",
        "symbol_lines"]
    assert fineweb2.operator_params("language")["threshold"] is None and fineweb2.output.by_language
    assert check_columns(fineweb2)["language_pairs"] == pa.map_(pa.string(), pa.float32())


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


def test_a_path_string_is_one_path_even_with_spaces_and_lists_give_several():
    assert load_recipe(FINEWEB, ["input.paths=my data/x.warc.gz"]).input.paths == ["my data/x.warc.gz"]
    assert load_recipe(FINEWEB, ["input.paths=data/*.warc.gz"]).input.paths == ["data/*.warc.gz"]  # make INPUT=
    assert load_recipe(FINEWEB, ["input.paths=[a b.gz, c.gz]"]).input.paths == ["a b.gz", "c.gz"]


@pytest.mark.parametrize("override, message", [
    ("pipeline.dedup.x=1", "--set pipeline.dedup: no pipeline step named 'dedup'"),
    ("output.root.sub=1", "--set output.root.sub: output.root is not a mapping"),
    ("output.root.sub.deeper=1", "--set output.root.sub: output.root is not a mapping"),
    ("pipeline.12.x=1", "--set pipeline.12: there are 8 pipeline steps"),
    ("pipeline.2.threshold.x=1", "--set pipeline.2.threshold.x: pipeline.2.threshold is not a mapping"),
    ("pipeline.language=1", "--set pipeline.language: cannot replace a pipeline step whole; set one of its parameters"),
    ("input.paths.0=x", "--set input.paths.0: input.paths is not a mapping"),
])
def test_override_errors_name_the_key(override, message):
    with pytest.raises(ValueError) as err:
        load_recipe(FINEWEB, [override])
    assert str(err.value) == message
    with pytest.raises(ValueError, match="expected key=value"):
        apply_override({}, "input.limit")


def test_overrides_fill_a_null_step_by_name_or_index(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\npipeline:\n  - extract:\n  - language:\n")
    recipe = load_recipe(str(path), ["pipeline.0.engine=trafilatura", "pipeline.language.threshold=0.5"])
    assert recipe.operator_params("extract")["engine"] == "trafilatura"
    assert recipe.operator_params("language")["threshold"] == 0.5


@pytest.mark.parametrize("text, kind", [("- name: r\n- pipeline: []\n", "list"), ("just words\n", "scalar")])
def test_a_recipe_must_be_a_mapping(tmp_path, text, kind):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_recipe(str(path), ["input.limit=2"])
    assert str(err.value) == f"{path}: a recipe must be a mapping of keys to values, not a YAML {kind}"


def test_validation_errors_are_one_line_starting_with_the_key():
    with pytest.raises(ValueError) as err:
        load_recipe(FINEWEB, ["input.limit=0", "mode=drop"])
    assert str(err.value) == ("mode: Input should be 'filter' or 'annotate'; "
                              "input.limit: Input should be greater than or equal to 1")


@pytest.mark.parametrize("replicas", ["0", "-3", "[0, 2]", "[3, 2]", "[-1, 4]"])
def test_llm_replicas_must_be_at_least_one_and_min_at_most_max(replicas):
    with pytest.raises(ValueError) as err:
        load_model(SynthRecipe, WRAP, [f"llm.replicas={replicas}"])
    assert str(err.value) == "llm.replicas: must be a count >= 1, or [min, max] with 1 <= min <= max"


def test_llm_replicas_accept_a_count_or_a_range():
    assert load_model(SynthRecipe, WRAP, ["llm.replicas=8"]).llm.replicas == 8
    assert load_model(SynthRecipe, WRAP, ["llm.replicas=[2, 8]"]).llm.replicas == (2, 8)
    assert load_model(SynthRecipe, WRAP, ["llm.replicas=[3, 3]"]).llm.replicas == (3, 3)


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://x", "http://", "127.0.0.1:8000/v1", "http:///v1"])
def test_endpoint_url_must_be_http_with_a_host(url):
    with pytest.raises(ValueError) as err:
        load_model(SynthRecipe, WRAP, [f"llm.endpoint.url={url}"])
    assert str(err.value) == (f"llm.endpoint.url: {url!r} is not an http(s) URL with a host, "
                              "like http://127.0.0.1:8000/v1")
    assert load_model(SynthRecipe, WRAP, ["llm.endpoint.url=https://api.example.com/v1"]).llm.endpoint.url


@pytest.mark.parametrize("model, path, key", [
    (DedupRecipe, DEDUP, "compression"), (SynthRecipe, WRAP, "compression"), (Recipe, FINEWEB, "output.compression")])
def test_compression_is_one_of_the_parquet_codecs(model, path, key):
    with pytest.raises(ValueError) as err:
        load_model(model, path, [f"{key}=brotli9000"])
    assert str(err.value) == f"{key}: Input should be 'zstd', 'snappy', 'gzip' or 'none'"
    assert load_model(model, path, [f"{key}=none"])


def test_every_compression_name_is_one_pyarrow_writes():
    written = {}
    for name in get_args(Compression):
        out = io.BytesIO()
        pq.write_table(pa.table({"a": [1]}), out, compression=name)
        written[name] = pq.ParquetFile(out).metadata.row_group(0).column(0).compression
    assert written == {"zstd": "ZSTD", "snappy": "SNAPPY", "gzip": "GZIP", "none": "UNCOMPRESSED"}


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


@pytest.mark.parametrize("model, path, override, message", [
    (Recipe, FINEWEB, "pipeline.language.treshold=0.5",
     "pipeline.language.treshold: unknown key; did you mean threshold?"),
    (Recipe, FINEWEB, "inptu.limit=2", "inptu: unknown key; did you mean input?"),
    (Recipe, FINEWEB, "input.limt=2", "input.limt: unknown key; did you mean limit?"),
    (Recipe, FINEWEB, "pipeline.c4.filter_no_terminal_punc=true",
     "pipeline.c4.filter_no_terminal_punc: unknown key; did you mean filter_no_terminal_punct?"),
    (Recipe, FINEWEB, "pipeline.language.zzzz=1", "pipeline.language.zzzz: unknown key; known keys: languages, "
        "threshold, fallback_threshold, language_configs, pairs_threshold, model, filename"),
    (SynthRecipe, WRAP, "llm.sampling.temprature=0.5",
     "llm.sampling.temprature: unknown key; did you mean temperature?"),
    (SynthRecipe, WRAP, "llm.endpoint.ulr=x", "llm.endpoint.ulr: unknown key; did you mean url?"),
    (DedupRecipe, DEDUP, "minhash.bandz=3", "minhash.bandz: unknown key; did you mean bands?"),
    # a list item of a union chosen by its `kind` (pydantic's loc names the member; the key does not)
    (QualityRecipe, QUALITY, "classifiers.fineweb_edu.devcie=cpu",
     "classifiers.1.devcie: unknown key; did you mean device?"),
    (QualityRecipe, QUALITY, "classifiers.1.device=tpu", "classifiers.1.device: Input should be 'gpu' or 'cpu'"),
    (QualityRecipe, QUALITY_LLM, "rating.llm.sampling.max_tokns=3",
     "rating.llm.sampling.max_tokns: unknown key; did you mean max_tokens?"),
])
def test_a_misspelt_key_is_named_with_the_nearest_known_one(model, path, override, message):
    with pytest.raises(ValueError) as err:
        load_model(model, path, [override])
    assert str(err.value) == message


class _Leaf(Strict):
    alpha: int = 1


class _Other(Strict):
    beta: int = 1


class _Nested(Strict):
    maybe: _Leaf | None = None
    either: _Leaf | _Other | None = None
    items: list[_Leaf] = []
    named: dict[str, _Leaf] = {}
    pair: tuple[_Leaf, ...] = ()


@pytest.mark.parametrize("text, message", [
    ("maybe: {alpah: 1}", "maybe.alpah: unknown key; did you mean alpha?"),
    ("either: {bta: 1}", "either.bta: unknown key; did you mean beta?"),  # one line for both members tried
    ("either: {zzzz: 1}", "either.zzzz: unknown key; known keys: alpha, beta"),
    ("items: [{alpha: 1}, {alpah: 1}]", "items.1.alpah: unknown key; did you mean alpha?"),
    ("named: {a: {alpah: 1}}", "named.a.alpah: unknown key; did you mean alpha?"),
    ("pair: [{alpah: 1}]", "pair.0.alpah: unknown key; did you mean alpha?"),
    ("itemz: []", "itemz: unknown key; did you mean items?"),
])
def test_the_nearest_key_is_found_through_optionals_unions_lists_and_dicts(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError) as err:
        load_model(_Nested, str(path))
    assert str(err.value) == message


def test_misspelt_step_and_operator_names_get_the_nearest_one(tmp_path):
    with pytest.raises(ValueError) as err:
        load_recipe(FINEWEB, ["pipeline.langauge.threshold=0.5"])
    assert str(err.value) == "--set pipeline.langauge: no pipeline step named 'langauge'; did you mean language?"
    path = tmp_path / "r.yaml"
    path.write_text("name: r\npipeline:\n  - extract: {}\n  - langauge: {}\n")
    with pytest.raises(ValueError) as err:
        load_recipe(str(path))
    assert str(err.value) == "pipeline[1]: unknown operator 'langauge'; did you mean language?"


def test_a_missing_recipe_file_is_named_as_the_config_with_the_nearest_file_beside_it(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "fineweb.yaml").write_text("name: r\n")
    monkeypatch.chdir(tmp_path)
    for path, message in [
        ("recipes/finewbe.yaml", "--config: recipes/finewbe.yaml does not exist; did you mean recipes/fineweb.yaml?"),
        ("recipes/other.yaml", "--config: recipes/other.yaml does not exist"),
        ("nowhere/fineweb.yaml", "--config: nowhere/fineweb.yaml does not exist"),
    ]:
        with pytest.raises(FileNotFoundError) as err:
            load_recipe(path)
        assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        load_recipe("recipes")
    assert str(err.value) == "--config: recipes is a folder, not a recipe file"
    (tmp_path / "bad.yaml").write_text("name: r\n  pipeline: [\n")
    with pytest.raises(ValueError) as err:
        load_recipe("bad.yaml")
    assert str(err.value) == ("--config: bad.yaml is not valid YAML (line 2, column 11): "
                              "mapping values are not allowed here")
