"""The openai engine's HTTP stage against a real local server: exact result columns in order, one kept-alive
connection per slot, never more than ``endpoint.concurrency`` requests in flight, ``qps`` as a pace, retries."""

from __future__ import annotations

import asyncio
import threading
import time

import pyarrow as pa
import pytest

from operators.llm.endpoint import EndpointStage
from operators.llm.engine import PASS_THROUGH, LLMConfig
from tests.scripted_llm import Raw, ScriptedLLM


def requests(n: int) -> pa.Table:
    return pa.Table.from_pylist([{"request_key": f"s\td{i}\twrap_easy\t0", "shard_key": "s", "parent_id": f"d{i}",
                                  "prompt_name": "wrap_easy", "chunk_index": 0, "chunks": 1, "chunk": f"text {i}",
                                  "request_seed": 7, "expected": n} for i in range(n)])


def run(server: ScriptedLLM, table: pa.Table, **endpoint) -> pa.Table:
    llm = LLMConfig(model="m", engine="openai", endpoint={"url": server.url, **endpoint},
                    sampling={"max_tokens": 3})
    stage = EndpointStage(llm, PASS_THROUGH)

    async def go():
        try:
            return await stage(table)
        finally:
            await stage.session.close()

    return asyncio.run(go())


def test_results_come_back_in_order_over_kept_alive_connections_with_bounded_concurrency():
    lock, now, most = threading.Lock(), [0], [0]

    def answer(messages):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.01)
        with lock:
            now[0] -= 1
        word = messages[-1]["content"].rsplit("text ", 1)[1]
        return Raw(400, '{"error": {"message": "too long"}}') if word == "3" else f"done {word}"

    server = ScriptedLLM(answer)
    try:
        out = run(server, requests(40), concurrency=3)
    finally:
        server.close()
    assert out.column_names == [*PASS_THROUGH, "generated", "tokens_in", "tokens_out", "truncated", "error"]
    assert out.select(list(PASS_THROUGH)) == requests(40)
    rows = out.to_pylist()
    assert [r["generated"] for r in rows] == [("" if i == 3 else f"done {i}") for i in range(40)]
    assert [r["error"] for r in rows] == ["too long" if i == 3 else "" for i in range(40)]
    assert {(r["tokens_out"], r["truncated"]) for r in rows} == {(2, False), (0, False)}
    assert server.requests[0]["seed"] == 7 and server.requests[0]["max_tokens"] == 3
    assert most[0] == 3 and len(server.clients) == 3  # 40 requests over 3 connections, 3 in flight at most


def test_a_busy_endpoint_is_retried_then_stops_naming_the_retries_and_qps_paces_requests():
    seen, busy = [], [2]

    def answer(messages):
        seen.append(time.monotonic())
        busy[0] -= 1
        return Raw(503, "busy", "text/plain") if busy[0] >= 0 else "fine"

    server = ScriptedLLM(answer)
    try:
        out = run(server, requests(1), retries=2, retry_backoff_s=0.05)
        assert out.column("generated").to_pylist() == ["fine"] and len(seen) == 3
        assert seen[2] - seen[1] >= 0.1 and seen[1] - seen[0] >= 0.05  # the backoff doubles
        seen.clear()
        started = time.monotonic()
        run(server, requests(7), qps=20)
        assert time.monotonic() - started >= 6 / 20 and len(seen) == 7
    finally:
        server.close()
    always = ScriptedLLM(lambda messages: Raw(503, "busy", "text/plain"))
    try:
        with pytest.raises(RuntimeError, match=r"^Reached maximum retries of 1 for request 's\\td0\\twrap_easy\\t0': "
                                               r"HTTP 503"):
            run(always, requests(1), retries=1, retry_backoff_s=0.01)
    finally:
        always.close()
