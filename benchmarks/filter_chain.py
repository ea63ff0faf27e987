"""The fineweb recipe's four quality filters over extracted real pages, ours and datatrove's, per filter.

Every page reaches the first filter (no language step: the texts of all languages); each filter sees
what the ones before it kept, as in the job. Ours runs batch by batch through a ``Chain`` in filter
mode (its tokenisation is shared by the filters within a batch only); datatrove's runs its filters'
``filter(doc)`` per document. Each tool's per-filter seconds, best of ``runs``, one core. Pass distinct
texts: both tools memoise word chunks (ours and spaCy's tokenizer cache), which later runs find warm,
as a running worker does.
"""

from __future__ import annotations

import time

import pyarrow as pa

from jobs.curate.recipe import load_recipe
from operators.io.storage import Storage
from operators.pipeline import Chain
from operators.registry import build

FILTERS = ("gopher_repetition", "gopher_quality", "c4", "fineweb_quality")


def ours(recipe_path: str, texts: list[str], runs: int = 5, batch_size: int = 256) -> dict[str, tuple[int, float]]:
    """Documents in and seconds per filter (best of ``runs``)."""
    recipe = load_recipe(recipe_path, [])
    ops = [build(name, params, Storage()) for name, params in recipe.steps if name in FILTERS]
    batches = [pa.table({"text": texts[i : i + batch_size]}) for i in range(0, len(texts), batch_size)]
    best: dict[str, tuple[int, float]] = {}
    for _ in range(runs):
        chain = Chain(ops, "filter")
        for batch in batches:
            chain(batch)
        for name, s in chain.stats_dict().items():
            best[name] = (s["in"], min(best.get(name, (0, s["seconds"]))[1], s["seconds"]))
    return best


def datatrove(texts: list[str], runs: int = 5) -> dict[str, tuple[int, float]]:
    """Documents in and seconds per filter of datatrove 0.10.1's same filters (C4 as FineWeb ran it)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = dict(zip(FILTERS, (GopherRepetitionFilter(), GopherQualityFilter(),
                                 C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter()), strict=True))
    for f in filters.values():  # loads spaCy's tokenizer once, outside the timing
        f.filter(Document(text="Warm up. The tokenizer loads here.", id="w"))
    best: dict[str, tuple[int, float]] = {}
    for _ in range(runs):
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        for name, f in filters.items():
            start, kept = time.perf_counter(), []
            for doc in docs:
                if f.filter(doc) is True:
                    kept.append(doc)
            best[name] = (len(docs), min(best.get(name, (0, float("inf")))[1], time.perf_counter() - start))
            docs = kept
    return best


def chain_rows(recipe_path: str, texts: list[str], peer: bool) -> list[tuple]:
    """Table rows (stage, docs, MB of text, seconds) per filter and for the chain, ours then datatrove's."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    rows = []
    tools = [("ours", ours(recipe_path, texts))] + ([("datatrove", datatrove(texts))] if peer else [])
    for label, per_filter in tools:
        rows += [(f"{label}: {name}", docs, mb * docs / len(texts), s) for name, (docs, s) in per_filter.items()]
        rows.append((f"{label}: quality chain (4 filters)", len(texts), mb, sum(s for _, s in per_filter.values())))
    return rows
