"""Start-up checks of files, environment and models: each fails naming the key, before Ray or Spark starts."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from jobs.classify.recipe import QualityRecipe
from jobs.common.recipe import load_model
from jobs.curate.checks import check as check_curate
from jobs.curate.recipe import load_recipe
from jobs.dedup import DedupRecipe
from jobs.dedup.job import check as check_dedup
from jobs.synthesize import SynthRecipe
from jobs.synthesize.checks import check as check_synthesize
from operators.filters.language import default_model_path
from tests.conftest import ROOT
from tests.test_fasttext_quality import train_classifier
from tests.waiting import GENEROUS_S

RECIPES = ROOT / "jobs" / "recipes"
FINEWEB, DCLM, DEDUP = str(RECIPES / "fineweb.yaml"), str(RECIPES / "dclm.yaml"), str(RECIPES / "dedup.yaml")
WRAP, NEMOTRON = str(RECIPES / "rephrase-wrap.yaml"), str(RECIPES / "rephrase-nemotron.yaml")
UNSET = "CC_REFINERY_TEST_UNSET_KEY"


def _curate(tmp_path, *overrides):
    return load_recipe(FINEWEB, [f"output.root={tmp_path / 'out'}", *overrides])


def _synth(tmp_path, *overrides, recipe=WRAP):
    return load_model(SynthRecipe, recipe, [f"output={tmp_path / 'out'}", *overrides])


def _message(check, recipe) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        check(recipe)
    return str(err.value)


def test_shipped_recipes_pass_and_leave_no_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipes' blocklist paths are relative to the repository
    out = tmp_path / "out"
    check_curate(load_recipe(FINEWEB, [f"output.root={out}"]))
    # DCLM's classifier comes from the hub, unreachable here: a tiny one trained on the spot stands in.
    model = train_classifier(tmp_path)
    check_curate(load_recipe(DCLM, [f"output.root={out}", f"pipeline.dclm_fasttext.model={model}"]))
    check_dedup(load_model(DedupRecipe, DEDUP, [f"output={out}"]))
    check_synthesize(_synth(tmp_path))  # llm.model is the hub id Qwen/Qwen2.5-7B-Instruct: no network needed
    check_synthesize(_synth(tmp_path, recipe=NEMOTRON))
    assert not out.exists()  # the probes went where a folder exists


def test_language_codes_are_checked_against_the_models_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _message(check_curate, _curate(tmp_path, "pipeline.language.languages=[en, english, xx]")) == (
        "pipeline.language.languages: 'english', 'xx' not among the model's 176 languages, "
        "which are like eng_Latn, rus_Cyrl, deu_Latn, fra_Latn, ita_Latn")
    check_curate(_curate(tmp_path, "pipeline.language.languages=[de, zh, ceb]"))
    check_curate(_curate(tmp_path, "pipeline.language.languages=[]"))


def test_a_custom_language_model_must_exist_and_be_fasttext(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    model = tmp_path / "lid.ftz"
    assert _message(check_curate, _curate(tmp_path, f"pipeline.language.model={model}")) == (
        f"pipeline.language.model: {model} does not exist")
    model.write_text("not a model")
    assert _message(check_curate, _curate(tmp_path, f"pipeline.language.model={model}")) == (
        f"pipeline.language.model: {model} is not a fastText model")
    shutil.copy(default_model_path(), tmp_path / "copy.ftz")
    check_curate(_curate(tmp_path, f"pipeline.language.model={tmp_path / 'copy.ftz'}"))


def test_a_missing_blocklist_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    missing = tmp_path / "adult.txt"
    assert _message(check_curate, _curate(tmp_path, f"pipeline.url.blocklists=[{missing}]")) == (
        f"pipeline.url.blocklists: {missing} does not exist")


def test_s3_blocklists_model_and_output_root(tmp_path, s3_server, s3_client):
    s3_client.create_bucket(Bucket="preflight")
    with open(default_model_path(), "rb") as f:
        s3_client.put_object(Bucket="preflight", Key="lid.ftz", Body=f.read())
    s3_client.put_object(Bucket="preflight", Key="block.txt", Body=b"blocked.example\n")
    s3 = [f"storage.endpoint_url={s3_server}", "pipeline.language.model=s3://preflight/lid.ftz"]

    def recipe(*overrides):
        return load_recipe(FINEWEB, [*s3, "output.root=s3://preflight/out",
                                     "pipeline.url.blocklists=[s3://preflight/block.txt]", *overrides])

    check_curate(recipe())
    assert "Contents" not in s3_client.list_objects_v2(Bucket="preflight", Prefix="out/")  # no probe, no marker
    assert _message(check_curate, recipe("pipeline.url.blocklists=[s3://preflight/gone.txt]")) == (
        "pipeline.url.blocklists: s3://preflight/gone.txt does not exist")
    assert _message(check_curate, recipe("pipeline.language.languages=[english]")).startswith(
        "pipeline.language.languages: 'english' not among the model's 176 languages")
    assert _message(check_curate, recipe("output.root=s3://no-such-bucket/out")).startswith(
        "output.root: cannot write to s3://no-such-bucket/out: ")


def test_an_unwritable_output_is_named_for_every_job(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "file").write_text("")
    root = tmp_path / "file" / "out"  # under a file: unwritable even for root
    assert _message(check_curate, _curate(tmp_path, f"output.root={root}")).startswith(
        f"output.root: cannot write to {root}: [Errno 20] Not a directory")
    assert _message(check_dedup, load_model(DedupRecipe, DEDUP, [f"output={root}"])).startswith(
        f"output: cannot write to {root}: [Errno 20] Not a directory")
    assert _message(check_synthesize, _synth(tmp_path, f"output={root}")).startswith(
        f"output: cannot write to {root}: [Errno 20] Not a directory")


def test_the_api_key_variable_must_be_set_for_an_endpoint(tmp_path, monkeypatch):
    monkeypatch.delenv(UNSET, raising=False)
    openai = ["llm.engine=openai", f"llm.endpoint.api_key_env={UNSET}"]
    assert _message(check_synthesize, _synth(tmp_path, *openai)) == (
        f"llm.endpoint.api_key_env: environment variable {UNSET} is not set")
    check_synthesize(_synth(tmp_path, f"llm.endpoint.api_key_env={UNSET}"))  # vllm does not use it
    monkeypatch.setenv(UNSET, "secret")
    check_synthesize(_synth(tmp_path, *openai))


@pytest.mark.parametrize("overrides, message", [
    (["tokenizer=/no/such/tokenizer"], "tokenizer: /no/such/tokenizer does not exist"),
    (["llm.model=./models/none"], "llm.model: ./models/none does not exist"),
    (["llm.model=~/no-such-model-folder"], "llm.model: ~/no-such-model-folder does not exist"),
    (["llm.model=models/qwen/7b"], "llm.model: models/qwen/7b does not exist"),
    (["llm.model=models/qwen"], "llm.model: models/qwen does not exist"),  # ./models exists
    (["llm.engine=openai", "llm.model=./served"], "llm.model: ./served does not exist"),  # it is the tokenizer
    (["llm.model=s3://models/qwen"], "tokenizer: required when llm.model is an s3:// URI "
                                     "(chunking loads it with transformers)"),
])
def test_local_model_and_tokenizer_paths_must_exist(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert _message(check_synthesize, _synth(tmp_path, *overrides)) == message


def test_hub_ids_served_names_and_existing_paths_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tok").mkdir()
    for overrides in (["llm.model=gpt2"], ["llm.model=Qwen/Qwen2.5-0.5B-Instruct"], [f"llm.model={tmp_path}/tok"],
                      ["llm.model=./tok"], ["llm.engine=openai", "llm.model=./served", "tokenizer=tok"],
                      ["llm.model=s3://models/qwen", "tokenizer=./tok"]):
        check_synthesize(_synth(tmp_path, *overrides))


@pytest.mark.parametrize("job, recipe, setting, line", [
    ("curate", FINEWEB, "pipeline.language.languages=[english]",
     "error: pipeline.language.languages: 'english' not among the model's 176 languages, "
     "which are like eng_Latn, rus_Cyrl, deu_Latn, fra_Latn, ita_Latn"),
    ("curate", FINEWEB, "pipeline.url.blocklists=[no/such/list.txt]",
     "error: pipeline.url.blocklists: no/such/list.txt does not exist"),
    ("synthesize", WRAP, f"llm.endpoint.api_key_env={UNSET}",
     f"error: llm.endpoint.api_key_env: environment variable {UNSET} is not set"),
    ("dedup", DEDUP, "compression=brotli9000",
     "error: compression: Input should be 'zstd', 'snappy', 'gzip' or 'none'"),
])
def test_the_job_stops_with_one_line_naming_the_key_before_ray_starts(tmp_path, job, recipe, setting, line):
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # a local Ray makes its session folder here as it starts
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", UNSET)} | {"RAY_TMPDIR": ray_tmp}
    output = "output.root" if job == "curate" else "output"
    command = [sys.executable, "-m", f"jobs.{job}", "--config", recipe, "--set", f"{output}={tmp_path / 'out'}",
               "--set", setting, *(["--set", "llm.engine=openai"] if job == "synthesize" else [])]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=GENEROUS_S)
        assert (done.returncode, done.stdout, done.stderr.splitlines()) == (2, "", [line])
        assert os.listdir(ray_tmp) == [] and not (tmp_path / "out").exists()  # no Ray started, nothing written
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("sets, message", [
    (["classifiers=[{name: dclm, kind: fasttext, model: /no/such/model.bin}]", "buckets.classifiers=[dclm]"],
     "classifiers[0].model: /no/such/model.bin does not exist"),
    (["classifiers=[{name: dclm, kind: fasttext, model: s3://qpreflight/gone.bin}]", "buckets.classifiers=[dclm]"],
     "classifiers[0].model: s3://qpreflight/gone.bin does not exist"),
    (["rating.llm.model=./models/none"], "rating.llm.model: ./models/none does not exist"),
], ids=["local_classifier", "s3_classifier", "rating_model"])
def test_the_quality_job_names_a_missing_model_before_ray_starts(tmp_path, monkeypatch, s3_server, s3_client,
                                                                sets, message):
    from jobs.classify import run

    monkeypatch.chdir(tmp_path)
    s3_client.create_bucket(Bucket="qpreflight")
    shipped = "quality-llm.yaml" if sets[0].startswith("rating") else "quality.yaml"
    recipe = load_model(QualityRecipe, str(ROOT / "jobs" / "recipes" / shipped),
                        [f"input={tmp_path}/in", f"output={tmp_path}/out", f"storage.endpoint_url={s3_server}", *sets])
    with pytest.raises(FileNotFoundError) as err:
        run(recipe)
    assert str(err.value) == message and not (tmp_path / "out").exists()


def _run_jobs(tmp_path, *args: str, module: str = "jobs") -> tuple[subprocess.CompletedProcess, list[str]]:
    """``python -m jobs ... --output <tmp>/out`` as a user runs it; also what it left in a Ray temp folder of
    its own (a local Ray's session folder is made there as Ray starts)."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", UNSET)} | {"RAY_TMPDIR": ray_tmp}
    output = ["--output", str(tmp_path / "out")] if module == "jobs" else []
    try:
        done = subprocess.run([sys.executable, "-m", module, *args, *output], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        return done, os.listdir(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("args, line", [
    (["--config", "jobs/recipes/fineweb.yaml", "--input", "data/nope.warc.gz"],
     "error: input.paths: data/nope.warc.gz does not exist"),
    (["--config", "jobs/recipes/fineweb.yaml", "--input", "data/*.nope"],
     "error: input.paths: nothing matches 'data/*.nope'"),
    (["--config", "jobs/recipes/fineweb.yaml", "--input", "data/whirlwind.warc.gz,data/nope.warc.gz"],
     "error: input.paths: data/nope.warc.gz does not exist"),
    (["--config", "jobs/recipes/fineweb.yaml", "--input", "data"],
     "error: input.paths: data is a folder; give its files or a glob like 'data/*.warc.gz'"),
    (["--config", "jobs/recipes/finewbe.yaml", "--input", "data/whirlwind.warc.gz"],
     "error: --config: jobs/recipes/finewbe.yaml does not exist; did you mean jobs/recipes/fineweb.yaml?"),
    (["--config", "jobs/recipes/fineweb.yaml", "--set", "pipeline.language.treshold=0.5"],
     "error: pipeline.language.treshold: unknown key; did you mean threshold?"),
    (["--config", "jobs/recipes/fineweb.yaml", "--set", "inptu.limit=1"],
     "error: inptu: unknown key; did you mean input?"),
    (["--config", "jobs/recipes/rephrase-wrap.yaml", "--set", "llm.sampling.temprature=0.5"],
     "error: llm.sampling.temprature: unknown key; did you mean temperature?"),
    (["--config", "jobs/recipes/dedup.yaml", "--input", "data/nope"], "error: input: data/nope does not exist"),
    (["--config", "jobs/recipes/quality.yaml", "--input", "data"], "error: input: no .parquet files under data"),
    (["--config", "jobs/recipes/rephrase-wrap.yaml", "--input", "data/nope"], "error: input: data/nope does not exist"),
], ids=["literal", "glob", "one_of_two", "folder", "config", "pipeline_key", "top_key", "nested_key", "dedup",
        "classify", "synthesize"])
def test_bad_input_config_or_key_stops_before_ray_and_writes_nothing(tmp_path, args, line):
    done, ray_left = _run_jobs(tmp_path, *args)
    assert (done.returncode, done.stdout, done.stderr.splitlines()[-1:]) == (2, "", [line]), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()  # no output folder, _stats.json or lock
    assert ray_left == []  # Ray never started


def test_the_pipeline_checks_the_curation_input_before_ray_and_writes_nothing(tmp_path):
    done, ray_left = _run_jobs(tmp_path, "--config", "jobs/recipes/mixture.yaml", "--input", "data/nope.warc.gz")
    assert (done.returncode, done.stdout) == (2, "")
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(" input.paths: data/nope.warc.gz does not exist"), done.stderr
    assert not (tmp_path / "out").exists() and ray_left == []


def test_each_job_names_a_missing_recipe_as_its_config(tmp_path):
    for module in ("jobs", "jobs.curate", "jobs.dedup"):
        done, _ = _run_jobs(tmp_path, "--config", "jobs/recipes/dedpu.yaml", module=module)
        assert (done.returncode, done.stderr) == (
            2, "error: --config: jobs/recipes/dedpu.yaml does not exist; did you mean jobs/recipes/dedup.yaml?\n")


def test_a_literal_s3_input_must_exist(s3_server, s3_client):
    from operators.io.listing import resolve_inputs
    from operators.io.storage import Storage

    s3_client.create_bucket(Bucket="literal")
    s3_client.put_object(Bucket="literal", Key="in/a.warc.gz", Body=b"x")
    storage = Storage(endpoint_url=s3_server)
    assert resolve_inputs(storage, ["s3://literal/in/a.warc.gz"], None, "warc", None, None) == [
        "s3://literal/in/a.warc.gz"]
    with pytest.raises(FileNotFoundError) as err:
        resolve_inputs(storage, ["s3://literal/in/a.warc.gz", "s3://literal/in/b.warc.gz"], None, "warc", None, None)
    assert str(err.value) == "input.paths: s3://literal/in/b.warc.gz does not exist"


def test_the_dispatcher_hands_a_misspelt_top_level_key_to_the_job_that_names_it(tmp_path):
    recipe = tmp_path / "fineweb.yaml"
    recipe.write_text((RECIPES / "fineweb.yaml").read_text().replace("\ninput:", "\ninptu:"))
    done, ray_left = _run_jobs(tmp_path, "--config", str(recipe))
    assert (done.returncode, done.stderr) == (2, "error: inptu: unknown key; did you mean input?\n")
    assert not (tmp_path / "out").exists() and ray_left == []
