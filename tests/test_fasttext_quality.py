"""The ``dclm_fasttext`` operator with a tiny supervised fastText classifier trained here (no hub)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from jobs.curate.checks import check as check_curate
from jobs.curate.job import check_columns
from jobs.curate.recipe import load_recipe
from operators.filters.fasttext_quality import DCLM_FILE, FastTextQualityFilter, load_classifier, prepare
from operators.io.storage import Storage
from operators.registry import build
from tests.conftest import ROOT, train_classifier

DCLM = str(ROOT / "jobs" / "recipes" / "dclm.yaml")
HELD_OUT_HQ = [
    "The museum has a collection of old tools and letters that tell the history of the town.",
    "Energy from the sun is stored by plants in the molecules they build from water and air.",
    "The valley was settled by farmers who built the first houses along the banks of the river.",
]
HELD_OUT_CC = [
    "buy now cheap free click offer",
    "cart checkout login register cookies",
    "free spins casino bonus click now",
]
MULTILINE = "  Title\r\nFirst line.\n\n  indented\u2028last\x0bend \n"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    return train_classifier(tmp_path_factory.mktemp("fasttext-quality"))


def direct_scores(path: str, texts: list[str], label: str = "__label__hq") -> tuple[list[str], np.ndarray]:
    """Top label and p(label) straight from fastText on DCLM's line, computed as DCLM does."""
    labels, probs = load_classifier(path).predict([prepare(t) for t in texts], k=1)
    top = [lab[0] for lab in labels]
    p = np.array([float(prob[0]) for prob in probs])
    return top, np.where(np.array(top) == label, p, 1 - p).astype(np.float32)


def test_prepare_is_dclms_line_joining(model_path):
    assert prepare(MULTILINE) == "Title First line.    indented last end"
    assert prepare(None) == "" and prepare("one line") == "one line"
    line = "Title First line.    indented last end"
    out = FastTextQualityFilter(model=model_path)(pa.table({"text": [MULTILINE, line]}))
    assert out.column("dclm_score").to_pylist()[0] == out.column("dclm_score").to_pylist()[1]
    assert out.column("dclm_score").to_numpy()[0] == direct_scores(model_path, [line])[1][0]


def test_held_out_hq_scores_above_cc_and_the_other_label_gives_one_minus_p(model_path):
    texts = HELD_OUT_HQ + HELD_OUT_CC
    out = FastTextQualityFilter(model=model_path)(pa.table({"text": texts}))
    scores = out.column("dclm_score").to_numpy()
    assert out.schema.field("dclm_score").type == pa.float32()
    assert scores[:3].min() > 0.5 > scores[3:].max()
    top, expected = direct_scores(model_path, texts)
    assert top == ["__label__hq"] * 3 + ["__label__cc"] * 3
    assert scores.tolist() == expected.tolist()
    assert out.column("filter_reason").null_count == len(texts)

    cc = FastTextQualityFilter(model=model_path, label="__label__cc", column="cc_score")(pa.table({"text": texts}))
    assert "dclm_score" not in cc.column_names
    assert cc.column("cc_score").to_numpy().tolist() == direct_scores(model_path, texts, "__label__cc")[1].tolist()
    assert cc.column("cc_score").to_numpy()[3:].min() > 0.5 > cc.column("cc_score").to_numpy()[:3].max()


def test_threshold_rejects_lower_scores_and_keeps_an_earlier_reason(model_path):
    batch = pa.table({"text": HELD_OUT_HQ + HELD_OUT_CC, "filter_reason": [None] * 5 + ["language.score"]})
    out = FastTextQualityFilter(model=model_path, threshold=0.5)(batch)
    assert out.column("filter_reason").to_pylist() == [None, None, None, "dclm_fasttext.threshold",
                                                       "dclm_fasttext.threshold", "language.score"]
    assert FastTextQualityFilter(model=model_path, threshold=0.0)(batch).column("filter_reason").null_count == 5


def test_model_loads_from_s3_and_scores_the_same(model_path, s3_server, s3_client):
    s3_client.create_bucket(Bucket="models")
    s3_client.upload_file(model_path, "models", "quality/model.bin")
    storage = Storage(endpoint_url=s3_server)
    texts = pa.table({"text": HELD_OUT_HQ + HELD_OUT_CC})
    from_s3 = FastTextQualityFilter(storage=storage, model="s3://models/quality/model.bin")(texts)
    from_path = FastTextQualityFilter(model=model_path)(texts)
    assert from_s3.column("dclm_score").to_pylist() == from_path.column("dclm_score").to_pylist()
    assert load_classifier("s3://models/quality/model.bin", DCLM_FILE, storage) is load_classifier(
        "s3://models/quality/model.bin", DCLM_FILE, storage)


def test_bad_models_and_labels_are_one_line_naming_the_key(model_path, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError) as err:
        FastTextQualityFilter(model="nobody-here/no-such-classifier")
    assert str(err.value) == (
        "pipeline.dclm_fasttext.model: nobody-here/no-such-classifier is not a local file and "
        f"{DCLM_FILE} could not be fetched from that Hugging Face hub repo (LocalEntryNotFoundError); "
        "download it and set the model to its path or s3:// URI")
    with pytest.raises(FileNotFoundError, match=r"^pipeline\.dclm_fasttext\.model: \./gone\.bin does not exist$"):
        FastTextQualityFilter(model="./gone.bin")
    (tmp_path / "junk.bin").write_text("not a model")
    with pytest.raises(ValueError) as err:
        FastTextQualityFilter(model=str(tmp_path / "junk.bin"))
    assert str(err.value) == f"pipeline.dclm_fasttext.model: {tmp_path / 'junk.bin'} is not a fastText model"
    with pytest.raises(ValueError) as err:
        FastTextQualityFilter(model=model_path, label="__label__wiki")
    assert str(err.value) == ("pipeline.dclm_fasttext.label: '__label__wiki' is not one of the model's labels "
                              "['__label__cc', '__label__hq']")
    from operators.filters.language import default_model_path

    with pytest.raises(ValueError, match=r"^pipeline\.dclm_fasttext\.model: .*lid\.176\.ftz has 176 labels; "
                                         r"a binary classifier is needed$"):
        FastTextQualityFilter(model=default_model_path(), label="__label__en")


def test_dclm_recipe_places_the_classifier_after_the_heuristics(model_path, tmp_path, monkeypatch):
    recipe = load_recipe(DCLM)
    steps = [name for name, _ in recipe.steps]
    assert steps[steps.index("c4") + 1] == "dclm_fasttext" and steps[-1] == "pii"
    assert recipe.operator_params("dclm_fasttext") == {
        "model": "mlfoundations/fasttext-oh-eli5", "filename": DCLM_FILE, "label": "__label__hq",
        "column": "dclm_score", "threshold": 0.018112}
    assert check_columns(recipe)["dclm_score"] == pa.float32()
    monkeypatch.chdir(ROOT)
    local = load_recipe(DCLM, [f"output.root={tmp_path / 'out'}", f"pipeline.dclm_fasttext.model={model_path}"])
    check_curate(local)
    op = build("dclm_fasttext", local.operator_params("dclm_fasttext"), Storage())
    scored = op(pa.table({"text": HELD_OUT_HQ + HELD_OUT_CC}))
    assert scored.column("filter_reason").to_pylist() == [
        "dclm_fasttext.threshold" if s < 0.018112 else None for s in scored.column("dclm_score").to_pylist()]
    assert scored.column("filter_reason").to_pylist()[:3] == [None] * 3


def test_preflight_names_a_missing_model(tmp_path, monkeypatch, s3_server, s3_client):
    monkeypatch.chdir(ROOT)
    out = f"output.root={tmp_path / 'out'}"
    with pytest.raises(FileNotFoundError) as err:
        check_curate(load_recipe(DCLM, [out, f"pipeline.dclm_fasttext.model={tmp_path / 'gone.bin'}"]))
    assert str(err.value) == f"pipeline.dclm_fasttext.model: {tmp_path / 'gone.bin'} does not exist"
    s3_client.create_bucket(Bucket="no-models")
    with pytest.raises(FileNotFoundError) as err:
        check_curate(load_recipe(DCLM, [out, "pipeline.dclm_fasttext.model=s3://no-models/dclm.bin",
                                        f"storage.endpoint_url={s3_server}"]))
    assert str(err.value) == "pipeline.dclm_fasttext.model: s3://no-models/dclm.bin does not exist"


def test_shipped_dclm_recipe_stops_offline_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jobs.curate", "--config", DCLM, "--set",
                             f"output.root={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "error: pipeline.dclm_fasttext.model: mlfoundations/fasttext-oh-eli5 is not a local file and "
        f"{DCLM_FILE} could not be fetched from that Hugging Face hub repo (LocalEntryNotFoundError); "
        "download it and set the model to its path or s3:// URI")
