"""Language ID of a model's output: the first and last ``validation.language_window`` characters."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs.synthesize.recipe import ValidationConfig
from operators.filters.language import identify, load_model
from operators.llm.assemble import assemble_shard, language_sample

TPT = {"separator": "\n\n", "wrap": None}


def test_the_sample_is_the_start_and_the_end_or_the_whole_text():
    assert language_sample("abcdefghij", 3) == "abc hij"
    assert language_sample("abcdef", 3) == "abcdef"
    assert language_sample("abcdefghij", None) == "abcdefghij"
    assert ValidationConfig().language_window == 1000
    with pytest.raises(ValueError, match="language_window"):
        ValidationConfig(language_window=0)


def _page(texts: list[str], language: str) -> str:
    model = load_model(None)
    return next(t[:6000] for t in texts if len(t) >= 6000 and identify(model, [t])[0][0] == language)


def _outputs(source: str, answers: list[str], window: int | None) -> list[tuple[str, str | None]]:
    parents = pa.table({"id": ["d"], "text": [source], "language": ["en"]})
    results = [{"parent_id": "d", "prompt_name": name, "chunk_index": 0, "chunk": source, "generated": answer,
                "truncated": False, "error": "", "tokens_in": 1, "tokens_out": 1, "request_seed": 0}
               for name, answer in zip(["nemotron_qa", "nemotron_wikipedia"], answers, strict=True)]
    validation = {**ValidationConfig(min_faithfulness=0).model_dump(), "language_window": window}
    kept, rejected, _ = assemble_shard(parents, results, "rephrase", "m", False, validation, TPT)
    rows = kept.to_pylist() + rejected.to_pylist()
    return sorted((r["synth_prompt"].split("@")[0], r["filter_reason"]) for r in rows)


def test_an_output_drifting_into_another_language_at_its_end_is_caught_by_its_last_characters(real_texts):
    english = [t for t in real_texts if "Wikipedia" not in t]
    source, other = _page(english, "eng_Latn"), _page(english[::-1], "eng_Latn")
    german = _page(real_texts, "deu_Latn")
    drifted = other[:4500] + " " + german[:1500]  # its last quarter German
    assert _outputs(source, [other, drifted], 1000) == [("nemotron_qa", None),
                                                        ("nemotron_wikipedia", "synth.wrong_language")]
    assert _outputs(source, [other, drifted], None) == [("nemotron_qa", None), ("nemotron_wikipedia", None)]
