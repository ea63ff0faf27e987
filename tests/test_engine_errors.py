"""What an OpenAI-compatible endpoint answers instead of a choice: retried when Ray's HTTP stage can
retry it, counted as ``synth.engine_error`` when one request fails, a stopped run naming the error when
the endpoint fails every request of a shard or keeps refusing; never an output, never a hang."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.scripted_llm import Raw, ScriptedLLM
from tests.test_synthesize_families import synthesize, which

GOOD = ("<thinking starts>Context.<thinking ends><improved response starts>Opened in 1876, the bridge over the "
        "Danube in Vienna spans 350 metres and joined both banks of the city.<improved response ends>")
RETRY = ["llm.endpoint.retries=2", "llm.endpoint.retry_backoff_s=0.05"]


@pytest.mark.slow
def test_a_failed_request_is_counted_and_a_busy_endpoint_is_retried(tmp_path, ray_local, tiny_bert):
    seen = Counter()

    def answer(messages):
        doc = which(messages)
        seen[doc] += 1
        if doc == "good":  # busy twice, then the answer
            return Raw(503, '{"error": "busy"}') if seen[doc] <= 2 else GOOD
        if doc == "lossy":
            return Raw(400, json.dumps({"object": "error", "message": "This model's maximum context length is 8 "
                                        "tokens", "type": "BadRequestError", "code": 400}))
        return Raw(200, '{"choices": []}')

    server = ScriptedLLM(answer)
    try:
        stats, kept, rejected = synthesize(tmp_path, "rewire.yaml", server, tiny_bert, *RETRY)
    finally:
        server.close()
    assert seen == {"good": 3, "lossy": 1, "untagged": 1}
    assert set(kept) == {"good"} and kept["good"]["text"].startswith("Opened in 1876")
    assert {k: r["filter_reason"] for k, r in rejected.items()} == {"lossy": "synth.engine_error",
                                                                     "untagged": "synth.engine_error"}
    assert stats["outputs"] == {"kept": 1, "synth.engine_error": 2}
    entry = json.loads(next((tmp_path / "out" / "_ledger").rglob("*.json")).read_text())
    assert entry["engine_errors"] == {"This model's maximum context length is 8 tokens": 1,
                                      "an answer without a choice": 1}


@pytest.mark.slow
@pytest.mark.parametrize("reply, says", [
    (Raw(500, '{"error": {"message": "CUDA out of memory", "type": "InternalServerError"}}'),
     "shard CC-MAIN-2024-22/s0: the endpoint answered all 3 requests with an error, e.g. CUDA out of memory"),
    (Raw(503, "overloaded", "text/plain"), "Reached maximum retries of 2"),
    (Raw(200, "<html>gateway login</html>", "text/html"), "ContentTypeError"),
], ids=["every_request_fails", "always_busy", "not_json"])
def test_an_endpoint_that_fails_every_request_stops_the_run_naming_it(tmp_path, ray_local, tiny_bert, reply, says):
    server = ScriptedLLM(lambda messages: reply)
    try:
        with pytest.raises(RuntimeError, match=r"^1 shard\(s\) not finished: ") as err:
            synthesize(tmp_path, "rewire.yaml", server, tiny_bert, *RETRY)
    finally:
        server.close()
    assert says in str(err.value) and "\n" not in str(err.value)
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert [f["shard"] for f in stats["failed"]] == ["CC-MAIN-2024-22/s0"] and stats["shards"] == 0
    assert not (tmp_path / "out" / "_ledger").exists() or not list((tmp_path / "out" / "_ledger").rglob("*.json"))
