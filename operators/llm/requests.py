"""Turn an input shard into generation requests: route each document to prompts, chunk to budget."""

from __future__ import annotations

import hashlib
from functools import cache

import pyarrow as pa

from operators.llm.chunking import chunk_text
from operators.llm.prompts import load_prompt


@cache
def token_counter(tokenizer_path: str):
    """``count(list[str]) -> list[int]`` with the model's own tokenizer (loaded once per process)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    if not getattr(tokenizer, "is_fast", False):
        return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # the Rust tokenizer as transformers' call sets it up (no truncation or padding, its special-token
    # splitting), without offsets and Python encodings: the same counts, chunking's CPU halved
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    backend.encode_special_tokens = bool(tokenizer.split_special_tokens)
    return lambda texts: [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


def route(table: pa.Table, prompts: list[str], routing: dict | None) -> list[list[str]]:
    """Prompt names per document: all ``prompts``, or by a quality column: ``high`` at or above
    ``threshold``, ``low`` at or below ``low_max`` (everything else, when it is not set), none between."""
    if not routing:
        return [prompts] * table.num_rows
    if routing["column"] not in table.column_names:
        raise ValueError(f"routing.column: {routing['column']!r} is not a column of the input")
    low_max = routing.get("low_max")
    return [routing["high"] if v is not None and v >= routing["threshold"]
            else routing["low"] if low_max is None or (v is not None and v <= low_max) else []
            for v in table.column(routing["column"]).to_pylist()]


def selected(table: pa.Table, select: dict | None) -> list[bool]:
    """Which documents are in the ``select`` band (``column`` between ``min`` and ``max``, inclusive), and in
    its deterministic ``fraction`` (by a hash of the id)."""
    if not select:
        return [True] * table.num_rows
    if select["column"] not in table.column_names:
        raise ValueError(f"select.column: {select['column']!r} is not a column of the input")
    low, high, bound = select["min"], select["max"], select.get("fraction", 1.0) * 2**64
    return [v is not None and (low is None or v >= low) and (high is None or v <= high)
            and int.from_bytes(hashlib.blake2b(str(doc_id).encode(), digest_size=8).digest(), "big") < bound
            for v, doc_id in zip(table.column(select["column"]).to_pylist(), table.column("id").to_pylist(),
                                 strict=True)]


def shard_requests(table: pa.Table, shard_key: str, prompts: list[str], routing: dict | None,
                   count, seed: int, select: dict | None = None, whole: bool = True) -> list[dict]:
    """One request per (document, prompt, chunk), each knowing how many its shard has in all.

    Documents outside ``select`` get none; with ``whole`` false only the first chunk of a
    document is sent for a ``tpt`` prompt (the paper thinks about the first 2,000 tokens).
    """
    rows = []
    for doc_id, text, chosen, inside in zip(table.column("id").to_pylist(), table.column("text").to_pylist(),
                                            route(table, prompts, routing), selected(table, select), strict=True):
        by_budget: dict[int, list[str]] = {}  # prompts sharing a budget (WRAP's four) share the chunks
        for name in chosen if inside else []:
            prompt = load_prompt(name)
            if prompt.max_input_tokens not in by_budget:
                by_budget[prompt.max_input_tokens] = chunk_text(text or "", prompt.max_input_tokens, count)
            chunks = by_budget[prompt.max_input_tokens]
            if prompt.family == "tpt" and not whole:
                chunks = chunks[:1]
            for i, chunk in enumerate(chunks):
                rows.append({"request_key": f"{shard_key}\t{doc_id}\t{name}\t{i}", "shard_key": shard_key,
                             "parent_id": doc_id, "prompt_name": name, "chunk_index": i, "chunks": len(chunks),
                             "chunk": chunk, "request_seed": seed})
    for row in rows:
        row["expected"] = len(rows)
    return rows


def rating_requests(table: pa.Table, shard_key: str, prompt: str, count, seed: int) -> list[dict]:
    """One request per document: the start of its text up to the prompt's budget (FineWeb-Edu and
    DataMan rated the start of a page); ``parent_id`` is the row's position, as ids may repeat."""
    budget = load_prompt(prompt).max_input_tokens
    texts = table.column("text").to_pylist()
    rows = [{"request_key": f"{shard_key}\t{i}", "shard_key": shard_key, "parent_id": str(i), "prompt_name": prompt,
             "chunk_index": 0, "chunks": 1, "chunk": (chunk_text(text or "", budget, count) or [""])[0],
             "request_seed": seed, "expected": len(texts)} for i, text in enumerate(texts)]
    return rows
