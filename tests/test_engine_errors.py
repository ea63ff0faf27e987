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


# What a Ray engine actor's log holds when vLLM's CPU build refuses to start (abridged from a real run,
# gpu_memory_utilization 0.99): the cause only in the VllmWorker's lines, the EngineCore pointing at it.
WORKER_LOG = """\
:job_id:01000000
:actor_name:MapWorker(MapBatches(vLLMEngineStageUDF))
(EngineCore pid=10103) INFO 12-02 10:20:15 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: ...
(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953] WorkerProc failed to start.
(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953] Traceback (most recent call last):
(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953]   File "vllm/v1/worker/cpu_worker.py", \
line 83, in __init__
(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953]     raise ValueError(
(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953] ValueError: Available memory on node 0 \
(7.11/10.59 GiB) on startup is less than desired CPU memory utilization (0.99, 10.48 GiB).
(EngineCore pid=10103) INFO 12-02 10:20:30 [multiproc_executor.py:486] [shutdown] Executor: all workers exited
(EngineCore pid=10103) ERROR 12-02 10:20:30 [core.py:1510] EngineCore failed to start.
(EngineCore pid=10103) ERROR 12-02 10:20:30 [core.py:1510] Traceback (most recent call last):
(EngineCore pid=10103) ERROR 12-02 10:20:30 [core.py:1510]     raise e from None
(EngineCore pid=10103) ERROR 12-02 10:20:30 [core.py:1510] Exception: WorkerProc initialization failed due to an \
exception in a background process. See stack trace for root cause.
"""
MID_RUN_LOG = """\
(EngineCore_DP0 pid=2001) ERROR 12-02 09:00:01 [core.py:900] EngineCore encountered a fatal error.
(EngineCore_DP0 pid=2001) ERROR 12-02 09:00:01 [core.py:900] RuntimeError: Worker failed with error 'CPU Generator \
does not use offset', please check the stack trace above for the root cause
"""


def _session(tmp_path, *logs: str):
    """A Ray session folder whose worker logs are ``logs``, oldest first (one file each, a second apart)."""
    import os

    folder = tmp_path / "session" / "logs"
    folder.mkdir(parents=True)
    for i, text in enumerate(logs):
        path = folder / f"worker-{i:04x}-01000000-{100 + i}.out"
        path.write_text(text)
        os.utime(path, (1000 + i, 1000 + i))
    (folder / "raylet.out").write_text("(EngineCore pid=1) ERROR 12-02 09:00:00 [x.py:1] KeyError: not a worker log\n")
    return str(tmp_path / "session")


def test_a_dying_engine_is_reported_with_the_root_cause_any_vllm_process_logged(tmp_path):
    from ray.exceptions import ActorDiedError

    from jobs.common.llm_cluster import LLMRayConfig, engine_error, failure
    from operators.llm.engine import LLMConfig

    session = _session(tmp_path, MID_RUN_LOG, "\x1b[0;36m" + WORKER_LOG.replace("ERROR", "\x1b[31mERROR\x1b[0m"))
    cause = ("ValueError: Available memory on node 0 (7.11/10.59 GiB) on startup is less than desired CPU memory "
             "utilization (0.99, 10.48 GiB).")
    assert engine_error(session, since=0) == (cause, True)  # the newest log, colours or not
    assert engine_error(session, since=1001.5) is None  # both logs older than the run
    try:
        raise RuntimeError("MapBatches(vLLMEngineStageUDF) failed") from ActorDiedError()
    except RuntimeError as err:
        died = err
    llm = LLMConfig(model="m", device="cpu")
    assert failure(died, LLMRayConfig(), llm, session, 0) == (
        f"llm: the engine could not start, tried 4 time(s) (llm.max_restarts=3): {cause}")

    mid_run = _session(tmp_path / "mid", WORKER_LOG, MID_RUN_LOG)  # only a pointer to a root cause: quoted as it is
    assert failure(died, LLMRayConfig(), llm.model_copy(update={"max_restarts": 1}), mid_run, 0) == (
        "an engine replica died 2 time(s) (llm.max_restarts=1): RuntimeError: Worker failed with error 'CPU "
        "Generator does not use offset', please check the stack trace above for the root cause")
    small = _session(tmp_path / "small", "(EngineCore pid=7) ERROR 12-02 09:00:01 [core.py:1510] EngineCore failed "
                     "to start.\n(EngineCore pid=7) ERROR 12-02 09:00:01 [core.py:1510] ValueError: To serve at least "
                     "one request with the model's max seq len (32768), (1.75 GiB KV cache is needed, which is larger "
                     "than the available KV cache memory (1.0 GiB).\n")
    assert failure(died, LLMRayConfig(), llm, small, 0) == (  # vLLM's advice names a GPU setting: ours is added
        "llm: the engine could not start, tried 4 time(s) (llm.max_restarts=3): ValueError: To serve at least one "
        "request with the model's max seq len (32768), (1.75 GiB KV cache is needed, which is larger than the "
        "available KV cache memory (1.0 GiB). (on device: cpu the KV cache's size is llm.cpu_kv_cache_gb)")
    assert failure(died, LLMRayConfig(), llm, _session(tmp_path / "none"), 0) == (
        "an engine replica died 4 time(s) (llm.max_restarts=3): ActorDiedError: The actor died unexpectedly before "
        "finishing this task. (the engine's error is in the Ray worker logs)")
