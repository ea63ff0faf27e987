"""A GlotLID-style LID model (labels ``__label__deu_Latn``) read from a path, an s3:// URI and a hub id: its
labels are the documents' languages as they are, and each language's own minimum score applies."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from operators.filters.language import LanguageFilter, load_model
from operators.filters.languages import language_config
from operators.io.storage import Storage
from tests.conftest import ENGLISH, GERMAN, ROOT, train_classifier

SERBIAN = ["Београд је главни и највећи град Србије и налази се на ушћу Саве у Дунав.",
           "Град има дугу историју и био је много пута разаран и поново изграђен током векова."]
LABELS = {"deu_Latn": GERMAN, "eng_Latn": ENGLISH, "srp_Cyrl": SERBIAN}


@pytest.fixture(scope="module")
def glotlid(tmp_path_factory) -> str:
    lines = [f"__label__{label} {text}" for label, texts in LABELS.items() for text in texts for _ in range(5)]
    return train_classifier(tmp_path_factory.mktemp("glotlid"), lines=lines)


def decided(model_path: str, storage: Storage | None = None) -> pa.Table:
    texts = [GERMAN[0], ENGLISH[0], SERBIAN[0]]
    return LanguageFilter(storage=storage, model=model_path, languages=[])(pa.table({"text": texts}))


def expected_reasons(out: pa.Table) -> list[str | None]:
    """``language.score`` where the top score is under the language's own minimum (0.65 without a config)."""
    minimum = [(language_config(lang) or {}).get("language_score", 0.65) for lang in out.column("language").to_pylist()]
    return [None if score >= low else "language.score"
            for score, low in zip(out.column("language_score").to_pylist(), minimum, strict=True)]


def test_a_glotlid_style_model_from_a_path_gives_its_labels_as_they_are(glotlid):
    out = decided(glotlid)
    model = load_model(glotlid)
    own = [label[0].removeprefix("__label__") for label in model.predict([GERMAN[0], ENGLISH[0], SERBIAN[0]])[0]]
    assert out.column("language").to_pylist() == own
    assert set(own) <= set(LABELS)
    for pairs in out.column("language_pairs").to_pylist():
        assert {label for label, _ in pairs} <= set(LABELS) and all(score > 0.01 for _, score in pairs)
    assert out.column("filter_reason").to_pylist() == expected_reasons(out)


def test_the_same_model_from_s3(glotlid, s3_server, s3_client):
    s3_client.create_bucket(Bucket="glotlid")
    with open(glotlid, "rb") as f:
        s3_client.put_object(Bucket="glotlid", Key="model.bin", Body=f.read())
    from_s3 = decided("s3://glotlid/model.bin", Storage(endpoint_url=s3_server))
    assert from_s3.column("language").to_pylist() == decided(glotlid).column("language").to_pylist()


def test_a_hub_id_is_read_through_the_hugging_face_cache_and_a_missing_one_is_named(glotlid, tmp_path):
    snapshot = tmp_path / "hub" / "models--cis-lmu--glotlid" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.bin").write_bytes(open(glotlid, "rb").read())
    (tmp_path / "hub" / "models--cis-lmu--glotlid" / "refs").mkdir()
    (tmp_path / "hub" / "models--cis-lmu--glotlid" / "refs" / "main").write_text("0" * 40)
    script = ("from operators.filters.language import load_model\n"
              "print(sorted(load_model('cis-lmu/glotlid').get_labels()))\n"
              "try:\n"
              "    load_model('cis-lmu/no-such-model')\n"
              "except FileNotFoundError as err:\n"
              "    print(err)\n")
    env = os.environ | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    labels, missing = done.stdout.strip().splitlines()
    assert labels == str(sorted(f"__label__{label}" for label in LABELS))
    assert missing.startswith("pipeline.language.model: cis-lmu/no-such-model is not a local file and model.bin "
                              "could not be fetched from that Hugging Face hub repo")
