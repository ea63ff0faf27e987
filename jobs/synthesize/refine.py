"""ProX program refinement on the synthesize job (``jobs/recipes/prox.yaml``): two passes of the one engine.

1. Document pass: the start of each document -> ``keep_doc()`` / ``drop_doc()``; the answers of a shard
   are written whole to ``<output>/_prox_doc/<crawl>/<shard>.parquet`` (its resume point).
2. Chunk pass, on the kept documents: line-numbered chunks -> programs of ``remove_lines`` /
   ``normalize`` / ``keep_chunk``, parsed and run by ``operators/llm/prox.py`` (never executed).

A shard is then written whole: refined documents (with the programs in ``prox_program``, to replay
or audit), dropped ones in ``_rejected/`` (``prox.drop_doc``, ``prox.too_little_left``), and its ledger
entry counts calls by function, lines removed, normalize targets not found and errors by reason.
For ProX requests ``chunk_index`` is the chunk's first line in the document.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.common.generation import stream
from jobs.synthesize.recipe import SynthRecipe
from operators.io.ledger import commit_entry
from operators.io.storage import Storage, join
from operators.llm.engine import engine_errors

DOC_SCHEMA = pa.schema([("parent_id", pa.string()), ("doc_program", pa.string())])


def _read(storage: Storage, path: str, columns: list[str] | None = None) -> pa.Table:
    fs, inner = storage.filesystem(path)
    return pq.read_table(inner, filesystem=fs, columns=columns)


def _doc_requests(raw: dict, tokenizer: str):
    def make(item: dict) -> list[dict]:
        from operators.llm.prompts import load_prompt
        from operators.llm.prox import doc_input
        from operators.llm.requests import token_counter

        recipe = SynthRecipe.model_validate(raw)
        table = _read(Storage(**recipe.storage.model_dump()), item["path"], ["id", "text"])
        budget, count = load_prompt(recipe.prox.doc_prompt).max_input_tokens, token_counter(tokenizer)
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        return [{"request_key": f"{item['shard_key']}\t{i}\tdoc", "shard_key": item["shard_key"], "parent_id": i,
                 "prompt_name": recipe.prox.doc_prompt, "chunk_index": 0, "chunks": 1,
                 "chunk": doc_input(t or "", budget, count), "request_seed": recipe.llm.sampling.seed,
                 "expected": len(ids)} for i, t in zip(ids, texts, strict=True)]

    return make


def _chunk_requests(raw: dict, tokenizer: str):
    def make(item: dict) -> list[dict]:
        from operators.llm.prompts import load_prompt
        from operators.llm.prox import line_chunks, number_lines, parse_doc_program
        from operators.llm.requests import token_counter

        recipe = SynthRecipe.model_validate(raw)
        storage = Storage(**recipe.storage.model_dump())
        table = _read(storage, item["path"], ["id", "text"])
        programs = _doc_programs(storage, recipe.output, item["shard_key"])
        budget, count = load_prompt(recipe.prox.chunk_prompt).max_input_tokens, token_counter(tokenizer)
        rows = []
        for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True):
            if not text or parse_doc_program(programs.get(doc_id))[0] == "drop":
                continue
            chunks = line_chunks(number_lines(text), budget, count)
            rows += [{"request_key": f"{item['shard_key']}\t{doc_id}\t{first}", "shard_key": item["shard_key"],
                      "parent_id": doc_id, "prompt_name": recipe.prox.chunk_prompt, "chunk_index": first,
                      "chunks": len(chunks), "chunk": chunk, "request_seed": recipe.llm.sampling.seed}
                     for first, chunk in chunks]
        for row in rows:
            row["expected"] = len(rows)
        return rows

    return make


def _doc_path(output: str, key: str) -> str:
    return join(output, "_prox_doc", f"{key}.parquet")


def _doc_programs(storage: Storage, output: str, key: str) -> dict[str, str]:
    table = _read(storage, _doc_path(output, key))
    return dict(zip(table.column("parent_id").to_pylist(), table.column("doc_program").to_pylist(), strict=True))


def _write_doc_programs(recipe, storage: Storage, key: str, results: list[dict]) -> dict:
    engine_errors(key, results)
    table = pa.table({"parent_id": [r["parent_id"] for r in results], "doc_program": [r["generated"] for r in results]},
                     schema=DOC_SCHEMA)
    storage.write_atomic(_doc_path(recipe.output, key), lambda out: pq.write_table(table, out))
    return {"shard": key, "outputs": {"doc_programs": table.num_rows}}


def finish_refined(recipe, storage: Storage, path: str, key: str, results: list[dict]) -> dict:
    """Run every document's programs; write the shard (refined, rejected) and its ledger entry."""
    from operators.llm.assemble import PARENT_COLUMNS, PROX_SCHEMA
    from operators.llm.prompts import load_prompt
    from operators.llm.prox import refine

    failed = engine_errors(key, results)
    table = _read(storage, path)
    programs = _doc_programs(storage, recipe.output, key)
    chunks: dict[str, list[tuple[int, str]]] = {}
    for r in sorted(results, key=lambda r: (r["parent_id"], r["chunk_index"])):
        chunks.setdefault(r["parent_id"], []).append((r["chunk_index"], r["generated"]))
    p, ref = recipe.prox, load_prompt(recipe.prox.chunk_prompt).ref
    kept, rejected, counts, errors, outcomes = [], [], Counter(), Counter(), Counter()
    for row in table.to_pylist():
        done = refine(row["text"] or "", programs.get(row["id"]) or "", chunks.get(row["id"], ()), p.min_fraction,
                      p.min_words)
        counts.update(done.counts)
        errors.update(done.errors)
        outcomes[done.dropped or "kept"] += 1
        if done.doc_reason:
            errors[f"doc.{done.doc_reason}"] += 1
        out = {**{c: row.get(c) for c in PARENT_COLUMNS}, "id": f"{row['id']}:prox", "parent_id": row["id"],
               "text": done.text if done.text is not None else row["text"], "language": row.get("language"),
               "synth_task": recipe.task, "synth_model": recipe.llm.model, "synth_prompt": ref,
               "synth_chunks": len(chunks.get(row["id"], ())), "prox_program": done.provenance.to_json(),
               "filter_reason": f"prox.{done.dropped}" if done.dropped else None}
        (rejected if done.dropped else kept).append(out)
    for rows, folder in ((kept, recipe.output), (rejected, join(recipe.output, "_rejected"))):
        if folder == recipe.output or rows:
            out_table = pa.Table.from_pylist(rows, schema=PROX_SCHEMA)
            storage.write_atomic(join(folder, f"{key}.parquet"),
                                 lambda out, t=out_table: pq.write_table(t, out, compression=recipe.compression))
    entry = {"shard": key, "source": path, "rows": {"data": len(kept), "rejected": len(rejected)},
             "outputs": {f"prox.{k}" if k != "kept" else k: v for k, v in sorted(outcomes.items())},
             "requests": len(results) + table.num_rows, "tokens_in": sum(r["tokens_in"] for r in results),
             "tokens_out": sum(r["tokens_out"] for r in results),
             "prox": {"calls": dict(sorted(counts.items())), "errors": dict(sorted(errors.items()))},
             **({"engine_errors": failed} if failed else {})}
    entry = commit_entry(storage, join(recipe.output, "_ledger", f"{key}.json"), entry)
    storage.delete(_doc_path(recipe.output, key))
    return entry


def refine_shards(recipe, storage: Storage, paths: dict[str, str], todo: list[str], session: list[str],
                  retried: list[dict]) -> None:
    """Both passes over the ``todo`` shards (the document pass only where its answers are not saved yet); shards
    planned again after a node was lost go to ``retried``."""
    tokenizer = recipe.tokenizer or recipe.llm.model
    doc_llm = recipe.llm.model_copy(update={
        "model": recipe.prox.doc_model or recipe.llm.model,
        "sampling": recipe.llm.sampling.model_copy(update={"max_tokens": recipe.prox.doc_max_tokens})})
    chunk_llm = recipe.llm.model_copy(update={
        "sampling": recipe.llm.sampling.model_copy(update={"max_tokens": recipe.prox.chunk_max_tokens})})
    pending = {k: paths[k] for k in todo if not storage.exists(_doc_path(recipe.output, k))}
    raw = recipe.model_dump()
    if pending:
        stream(doc_llm, recipe.ray, storage, join(recipe.output, "_parts_doc"), pending, _doc_requests(raw, tokenizer),
               lambda key, results: _write_doc_programs(recipe, storage, key, results), session, retried)
    stream(chunk_llm, recipe.ray, storage, join(recipe.output, "_parts"), {k: paths[k] for k in todo},
           _chunk_requests(raw, tokenizer),
           lambda key, results: finish_refined(recipe, storage, paths[key], key, results), session, retried)
