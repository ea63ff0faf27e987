"""A long generation run says how far it is: requests back of requests made, shards finished, output
tokens/s and an ETA, every ``ray.progress_every_s`` even while no batch comes back, and once at the end."""

from __future__ import annotations

import logging
import re
import time

import pytest

from jobs.common.generation import stream
from jobs.common.llm_cluster import LLMRayConfig
from jobs.common.progress import RequestProgress
from operators.io.storage import Storage
from operators.llm.engine import LLMConfig
from tests.scripted_llm import ScriptedLLM
from tests.test_synthesize_families import REWIRE_ANSWERS, synthesize, which


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_line_counts_requests_shards_tokens_and_an_eta():
    clock = Clock()
    progress = RequestProgress("generate", shards=5, clock=clock)
    clock.now = 10
    assert progress.line() == "progress generate: 0/0+ requests, 0 of 5 shards, 0.0 tokens/s, ETA unknown"
    progress.requests_made({"c/s0": 10, "c/s1": 14})  # 2 of 5 shards' requests made: 12 each, so about 60
    progress.requests_made({"c/s1": 14})  # a retried task reports the same count: not counted twice
    clock.now = 30
    assert progress.line() == "progress generate: 0/24+ requests, 0 of 5 shards, 0.0 tokens/s, ETA unknown"
    progress.returned(12, 824)
    progress.shard_finished()
    clock.now = 40
    assert progress.line() == "progress generate: 12/24+ requests, 1 of 5 shards, 20.6 tokens/s, ETA 2m40s"
    progress.requests_made({"c/s2": 8, "c/s3": 10, "c/s4": 6})  # all made: 48
    clock.now = 200
    assert progress.line() == "progress generate: 12/48 requests, 1 of 5 shards, 4.1 tokens/s, ETA 10m00s"
    progress.returned(36, 2000)
    for _ in range(4):
        progress.shard_finished()
    assert progress.line() == "progress generate: 48/48 requests, 5 of 5 shards, 14.1 tokens/s, ETA 0m00s"


@pytest.mark.slow
def test_a_run_logs_its_progress_while_it_waits_and_at_the_end(tmp_path, ray_local, tiny_bert, caplog):
    def answer(messages):
        time.sleep(0.5)  # slower than the progress interval: lines come while nothing comes back
        return REWIRE_ANSWERS["good" if which(messages) == "good" else "untagged"]

    server = ScriptedLLM(answer)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO, logger="cc_refinery.progress"):
            stats, _, _ = synthesize(tmp_path, "rewire.yaml", server, tiny_bert, "ray.progress_every_s=0.2")
    finally:
        server.close()
    records = [r for r in caplog.records if " requests, " in r.getMessage()]
    lines, ticking = [r.getMessage() for r in records], records[-1].created - records[0].created
    print(f"\n{len(lines)} progress lines over {ticking:.1f} s of a {time.monotonic() - started:.1f} s run; "
          f"last: {lines[-1]}")
    assert stats["requests"] == len(server.requests) == 3
    tokens = sum(len(REWIRE_ANSWERS[k].split()) for k in ("good", "untagged", "untagged"))
    assert stats["tokens_out"] == tokens
    assert re.fullmatch(r"progress generate: 3/3 requests, 1 of 1 shards, \d+\.\d tokens/s, ETA 0m00s", lines[-1])
    # every 0.2 s from the first line to the last (give or take a loaded machine; Ray's start before the first
    # line is no part of it), not only at the end
    assert ticking > 1.0 and len(lines) >= ticking / 0.2 / 3
    assert any(line.startswith("progress generate: 0/") for line in lines)  # before the first batch came back


def _one_request(item: dict) -> list[dict]:
    """A shard's one request (its input path is a number)."""
    return [{"request_key": item["shard_key"], "shard_key": item["shard_key"], "parent_id": item["path"],
             "prompt_name": "wrap_easy", "chunk_index": 0, "chunks": 1, "chunk": "Some text.", "request_seed": 0,
             "expected": 1}]


@pytest.mark.slow
def test_a_shard_is_finished_while_later_shards_are_still_generated(tmp_path, ray_local):
    answered: list[float] = []

    def answer(messages):
        time.sleep(2.0)  # room for a loaded machine to start a finishing task before the last answer
        answered.append(time.time())
        return "An answer."

    def finish(key: str, results: list[dict]) -> dict:
        (tmp_path / f"{key}.done").write_text(repr(time.time()))
        return {"shard": key, "rows": {"data": len(results)}}

    server = ScriptedLLM(answer)
    try:
        llm = LLMConfig(engine="openai", model="scripted", batch_size=1, endpoint={"url": server.url,
                                                                                   "concurrency": 1})
        stream(llm, LLMRayConfig(), Storage(), str(tmp_path / "_parts"), {f"s{k}": str(k) for k in range(4)},
               _one_request, finish, [], [])
    finally:
        server.close()
    finished = sorted(float((tmp_path / f"s{k}.done").read_text()) for k in range(4))
    print(f"\nanswered at +{[round(t - answered[0], 1) for t in answered]} s, shards finished at "
          f"+{[round(t - answered[0], 1) for t in finished]} s")
    assert len(answered) == 4
    assert finished[0] < answered[-1]  # Ray Data's default 256-row batches held every count to the end
