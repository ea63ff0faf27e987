"""Put a shard's generated chunks back together, validate them, and build the output rows."""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa

from operators.filters.language import load_model
from operators.llm.outputs import assemble, strip_preamble, validate
from operators.llm.prompts import load_prompt
from operators.schema import output_schema

SYNTH_FIELDS = {"tokens_in": pa.int64(), "tokens_out": pa.int64(), "synth_seed": pa.int64(),
                "synth_chunks": pa.int32()}
SYNTH_SCHEMA = output_schema(SYNTH_FIELDS)
PARENT_COLUMNS = ("url", "crawl", "date", "source", "source_offset")


def _languages(texts: list[str]) -> tuple[list[str | None], list[float]]:
    if not texts:
        return [], []
    labels, scores = load_model(None).predict([t.replace("\n", " ") for t in texts], k=1)
    return ([lab[0].removeprefix("__label__") if len(lab) else None for lab in labels],
            [float(min(s[0], 1.0)) if len(s) else 0.0 for s in scores])


def assemble_shard(parents: pa.Table, results: list[dict], task: str, model: str, mix: bool,
                   copy_jaccard: float, check_language: bool) -> tuple[pa.Table, pa.Table, Counter]:
    """(kept rows, rejected rows, counts by reason) for one shard.

    ``results`` are the engine's rows for the shard in any order; chunks are re-joined by
    ``chunk_index``. With ``mix`` the real documents are kept next to their synthetic versions.
    """
    parent = {row["id"]: row for row in parents.to_pylist()}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in results:
        groups[(row["parent_id"], row["prompt_name"])].append(row)
    keys = sorted(groups)
    texts, inputs, truncated = [], [], []
    for doc_id, name in keys:
        rows = groups[(doc_id, name)]
        texts.append(assemble([(r["chunk_index"], strip_preamble(r["generated"])) for r in rows]))
        inputs.append(parent[doc_id]["text"] or "")
        truncated.append(any(r["truncated"] for r in rows))
    languages, scores = _languages(texts)
    expected = [parent[d].get("language") for d, _ in keys] if check_language else None
    reasons = []
    for (_, name), text, source, cut, lang, exp in zip(keys, texts, inputs, truncated, languages,
                                                       expected or [None] * len(keys), strict=True):
        reasons += validate([text], [source], [cut], load_prompt(name).length_ratio, copy_jaccard, [lang], [exp])
    kept, rejected, counts = [], [], Counter()
    for i, (doc_id, name) in enumerate(keys):
        rows = groups[(doc_id, name)]
        out = {**{c: parent[doc_id].get(c) for c in PARENT_COLUMNS},
               "id": f"{doc_id}:{load_prompt(name).name}", "text": texts[i], "language": languages[i],
               "language_score": scores[i], "synth_task": task, "synth_model": model,
               "synth_prompt": load_prompt(name).ref, "parent_id": doc_id,
               "tokens_in": sum(r["tokens_in"] for r in rows), "tokens_out": sum(r["tokens_out"] for r in rows),
               "synth_seed": rows[0]["request_seed"], "synth_chunks": len(rows),
               "filter_reason": f"synth.{reasons[i]}" if reasons[i] else None}
        (rejected if reasons[i] else kept).append(out)
        counts[out["filter_reason"] or "kept"] += 1
    if mix:
        kept += [{c: row.get(c) for c in SYNTH_SCHEMA.names if c in row} for row in parent.values()]
    return (pa.Table.from_pylist(kept, schema=SYNTH_SCHEMA), pa.Table.from_pylist(rejected, schema=SYNTH_SCHEMA),
            counts)
