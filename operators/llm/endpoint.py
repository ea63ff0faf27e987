"""The ``openai`` engine's HTTP client: request rows -> ``/chat/completions`` -> result rows, one Ray Data stage.

Written here rather than taken from ray.data.llm's HTTP processor because that one caps the plumbing at
about 100 requests/s per core (measured by ``benchmarks/llm_plumbing.py``): it opens a session per batch
and a connection per request, awaits a batch's requests one at a time, and wraps them in three stages
(preprocess, HTTP, postprocess) that turn every row into a nested dict and back. This stage keeps one
session per actor (keep-alive, at most ``endpoint.concurrency`` requests in flight, ``endpoint.qps`` as a
rate over the whole stage), builds each payload from the Arrow batch's columns and returns the results as
columns beside the request's own. Retries and errors are ray.data.llm's: 408/429/502/503/504, timeouts
and dropped connections are retried ``endpoint.retries`` times with backoff doubling from
``endpoint.retry_backoff_s``, then the run stops ("Reached maximum retries of N"); an answer that is not
JSON stops it (aiohttp's ContentTypeError); any other answer without a choice is the row's ``error``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pyarrow as pa

from operators.llm.prompts import load_prompt

RETRYABLE = frozenset({408, 429, 502, 503, 504})
RESULTS = pa.schema([("generated", pa.string()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64()),
                     ("truncated", pa.bool_()), ("error", pa.string())])


def result(response: dict) -> tuple[str, int, int, bool, str]:
    """(generated, tokens_in, tokens_out, truncated, error) of one OpenAI-style answer."""
    choices = response.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    return (content if isinstance(content, str) else "", int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0), choice.get("finish_reason") == "length",
            "" if choice else error(response))


def error(response: dict) -> str:
    """What an answer without a choice says (an OpenAI or vLLM error body), on one short line."""
    found = response.get("error")
    text = (found.get("message") if isinstance(found, dict) else found) or response.get("message")
    return " ".join(str(text).split())[:300] if text else "an answer without a choice"


class EndpointStage:
    """A ``map_batches`` class (``batch_format="pyarrow"``): request rows in, the same rows' ``keep`` columns
    and :data:`RESULTS` out, in order. Runs on Ray Data's event loop of its actor, so the session lives on."""

    def __init__(self, llm, keep: tuple[str, ...]):
        self.llm, self.keep = llm, keep
        self.url = llm.endpoint.url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if llm.endpoint.api_key_env:
            self.headers["Authorization"] = f"Bearer {os.environ[llm.endpoint.api_key_env]}"
        self.session = self.slots = None
        self.next_start = 0.0

    async def __call__(self, batch: pa.Table) -> pa.Table:
        import aiohttp

        if self.session is None:  # made on the loop that runs every batch of this actor
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.llm.endpoint.concurrency))
            self.slots = asyncio.Semaphore(self.llm.endpoint.concurrency)
        columns = [batch.column(c).to_pylist() for c in ("prompt_name", "chunk", "request_seed", "request_key")]
        answers = await asyncio.gather(*[
            self._send(key, json.dumps({"model": self.llm.model, "messages": load_prompt(name).messages(chunk),
                                        **self.llm.sampling.request(int(seed))}))
            for name, chunk, seed, key in zip(*columns, strict=True)])
        results = list(zip(*map(result, answers), strict=True)) or [[]] * len(RESULTS)
        out = batch.select(list(self.keep))
        for field, values in zip(RESULTS, results, strict=True):
            out = out.append_column(field, pa.array(values, field.type))
        return out

    async def _send(self, key: str, body: str) -> dict:
        import aiohttp

        endpoint = self.llm.endpoint
        last = None
        for attempt in range(endpoint.retries + 1):
            if attempt:
                await asyncio.sleep(endpoint.retry_backoff_s * 2 ** (attempt - 1))
            async with self.slots:
                await self._pace()
                try:
                    async with self.session.post(self.url, data=body, headers=self.headers) as response:
                        if response.status in RETRYABLE:
                            last = f"HTTP {response.status} {response.reason}"
                            continue
                        answer = await response.json()
                except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
                    last = f"{type(err).__name__}: {err}"
                    continue
            return answer if isinstance(answer, dict) else {"error": f"an answer that is not an object: {answer!r}"}
        raise RuntimeError(f"Reached maximum retries of {endpoint.retries} for request {key!r}: {last}")

    async def _pace(self) -> None:
        """Wait for this request's turn under ``endpoint.qps`` (no wait without it)."""
        if not self.llm.endpoint.qps:
            return
        now = time.monotonic()
        start, self.next_start = max(now, self.next_start), max(now, self.next_start) + 1 / self.llm.endpoint.qps
        if start > now:
            await asyncio.sleep(start - now)
