"""Put a shard's generated chunks back together, validate them, and build the output rows.

Each prompt family turns its answers into output text its own way: rephrasings (WRAP,
Nemotron-CC) are re-joined in chunk order; REWIRE keeps only the improved span of each answer
(``synth.no_tags`` without it); TPT appends the thinking to the document, ``[document; thinking]``
(or interleaves ``[segment; thinking]`` pairs). An output any of whose requests the endpoint answered
with an error is ``synth.engine_error``. Then the shared validators run, and for the families that must
keep the source's facts, the faithfulness rule (``synth.unfaithful``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa

from operators.filters.language import identify, load_model
from operators.llm.faithfulness import faithfulness
from operators.llm.outputs import assemble, input_shingles, strip_preamble, validate
from operators.llm.prompts import load_prompt
from operators.llm.rewire import extract_improved
from operators.llm.tpt import join_segments, thinking, training_text
from operators.schema import output_schema

SYNTH_FIELDS = {"tokens_in": pa.int64(), "tokens_out": pa.int64(), "synth_seed": pa.int64(),
                "synth_chunks": pa.int32(), "faithfulness": pa.float32(), "score_before": pa.float32(),
                "score_after": pa.float32()}
SYNTH_SCHEMA = output_schema(SYNTH_FIELDS)
PROX_SCHEMA = output_schema({**SYNTH_FIELDS, "prox_program": pa.string()})
PARENT_COLUMNS = ("url", "crawl", "date", "source", "source_offset")
ANY_LENGTH = (0.0, float("inf"))


def language_sample(text: str, window: int | None) -> str:
    """What language ID reads of an output: its first and last ``window`` characters (all of it when it is
    no longer than the two, or without ``window``). On the real dev pages (mean 6 KB, several languages) the
    label of the first and last 1,000 characters was the whole page's on every page, at a third of the CPU,
    and it flagged about half of the pages whose last 20-30 % was in another language (a model drifting)
    where the whole page's label flagged none (``python -m benchmarks.language_window``)."""
    if window is None or len(text) <= 2 * window:
        return text
    return f"{text[:window]} {text[-window:]}"


def _languages(texts: list[str], window: int | None) -> tuple[list[str | None], list[float]]:
    codes, scores, _ = identify(load_model(None), [language_sample(text, window) for text in texts])
    return codes, scores


def family_output(family: str, rows: list[dict], document: str, tpt: dict) -> tuple[str, str, str | None]:
    """(output text, the generated part the validators measure, rejection rule or None) of one
    document x prompt, from its chunks' answers in any order."""
    rows = sorted(rows, key=lambda r: r["chunk_index"])
    if family == "rewire":
        spans = [extract_improved(r["generated"]) for r in rows]
        text = assemble([(i, span or "") for i, (span, _) in enumerate(spans)])
        rule = next((reason.removeprefix("synth.") for _, reason in spans if reason), None)
        return text, text, rule
    if family == "tpt":
        thoughts = [thinking(r["generated"])[0] for r in rows]
        measured = "\n\n".join(t for t in thoughts if t)
        if not measured:
            return "", "", "empty"
        wrap = tuple(tpt["wrap"]) if tpt["wrap"] else None
        if len(rows) == 1:
            return training_text(document, thoughts[0], tpt["separator"], wrap), measured, None
        return join_segments([r["chunk"] for r in rows], thoughts, tpt["separator"], wrap), measured, None
    text = assemble([(r["chunk_index"], strip_preamble(r["generated"])) for r in rows])
    return text, text, None


def assemble_shard(parents: pa.Table, results: list[dict], task: str, model: str, mix: bool, validation: dict,
                   tpt: dict, score=None, top_fraction: float = 1.0) -> tuple[pa.Table, pa.Table, Counter]:
    """(kept rows, rejected rows, counts by reason) for one shard.

    ``results`` are the engine's rows for the shard in any order. ``validation`` holds
    ``copy_jaccard``, ``check_language``, ``language_window``, ``min_faithfulness`` and
    ``faithfulness_families``;
    ``tpt`` the TPT ``separator`` and ``wrap``. With ``mix`` the real documents are kept next to
    their synthetic versions. With ``score`` (texts -> scores, the post-filter's scorer) every output
    gets ``score_before`` (its source's) and ``score_after``, and of the valid outputs only the
    ``top_fraction`` with the highest ``score_after`` in the shard are kept (``synth.below_top_share``).
    """
    parent = {row["id"]: row for row in parents.to_pylist()}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in results:
        groups[(row["parent_id"], row["prompt_name"])].append(row)
    keys = sorted(groups)
    prompts = {name: load_prompt(name) for _, name in keys}
    built = [family_output(prompts[name].family, groups[(doc_id, name)], parent[doc_id]["text"] or "", tpt)
             for doc_id, name in keys]
    sources = [parent[d]["text"] or "" for d, _ in keys]
    languages, scores = _languages([text for text, _, _ in built], validation["language_window"])
    faithful = faithfulness(sources, [measured for _, measured, _ in built])
    source_sets = input_shingles(sources)  # a source rewritten by several prompts is hashed once
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for i, (_, name) in enumerate(keys):
        by_prompt[name].append(i)
    checked: list[str | None] = [None] * len(keys)
    for name, at in by_prompt.items():  # one vectorised call per prompt (its length ratio), not one per output
        expected = [parent[keys[i][0]].get("language") for i in at] if validation["check_language"] else None
        found = validate([built[i][1] for i in at], [sources[i] for i in at],
                         [any(r["truncated"] for r in groups[keys[i]]) for i in at],
                         prompts[name].length_ratio or ANY_LENGTH, validation["copy_jaccard"],
                         [languages[i] for i in at], expected, [source_sets[i] for i in at])
        for i, reason in zip(at, found, strict=True):
            checked[i] = reason
    reasons = []
    for i, (doc_id, name) in enumerate(keys):
        rule = built[i][2]
        failed = any(r["error"] for r in groups[(doc_id, name)])
        found = ("engine_error" if failed else None) or rule or checked[i]
        if (found is None and prompts[name].family in validation["faithfulness_families"]
                and faithful[i] < validation["min_faithfulness"]):
            found = "unfaithful"
        reasons.append(found)
    before = after = [None] * len(keys)
    if score is not None and keys:
        before, after = score(sources), score([text for text, _, _ in built])
        valid = [i for i, reason in enumerate(reasons) if reason is None]
        ranked = sorted(valid, key=lambda i: (-after[i], keys[i]))
        for i in ranked[math.ceil(top_fraction * len(valid)):]:
            reasons[i] = "below_top_share"
    kept, rejected, counts = [], [], Counter()
    for i, (doc_id, name) in enumerate(keys):
        rows = groups[(doc_id, name)]
        out = {**{c: parent[doc_id].get(c) for c in PARENT_COLUMNS},
               "id": f"{doc_id}:{prompts[name].name}", "text": built[i][0], "language": languages[i],
               "language_score": scores[i], "synth_task": task, "synth_model": model,
               "synth_prompt": prompts[name].ref, "parent_id": doc_id,
               "tokens_in": sum(r["tokens_in"] for r in rows), "tokens_out": sum(r["tokens_out"] for r in rows),
               "synth_seed": rows[0]["request_seed"], "synth_chunks": len(rows),
               "faithfulness": float(np.float32(faithful[i])),
               "score_before": None if before[i] is None else float(before[i]),
               "score_after": None if after[i] is None else float(after[i]),
               "filter_reason": f"synth.{reasons[i]}" if reasons[i] else None}
        (rejected if reasons[i] else kept).append(out)
        counts[out["filter_reason"] or "kept"] += 1
    if mix:
        kept += [{c: row.get(c) for c in SYNTH_SCHEMA.names if c in row} for row in parent.values()]
    return (pa.Table.from_pylist(kept, schema=SYNTH_SCHEMA), pa.Table.from_pylist(rejected, schema=SYNTH_SCHEMA),
            counts)
