"""The FineWeb2 chain over every language of the real pages, ours and datatrove's, one core.

Both identify the language with lid.176 (datatrove's LanguageFilter, ``backend="ft176"``, keeping the pairs
above 0.01 as FineWeb2 does, on the model file our default loads), keep a document whose score reaches its
language's minimum, then run GopherRepetition, FineWebQuality and GopherQuality configured from that
language's FineWeb2 config, with its word tokenizer. Ours runs the fineweb2 recipe's steps batch by batch
through a ``Chain``; datatrove calls ``filter(doc)`` per document and filter. Best of five runs each,
interleaved, after one untimed run that loads every tokenizer (both tools). A language without a config runs
the recipe's fallback in both (FineWeb's English thresholds, no stop-word rule).
"""

from __future__ import annotations

import time

import pyarrow as pa

from benchmarks.datatrove_fineweb2 import STEPS, filters
from jobs.curate.recipe import load_recipe
from operators.filters.language import default_model_path
from operators.filters.languages import code, language_config
from operators.io.storage import Storage
from operators.pipeline import Chain
from operators.registry import build

NAMES = ("language", *STEPS)


def ours(recipe_path: str, texts: list[str], batch_size: int = 256):
    """One run of the recipe's language step and three filters: a function returning the documents kept."""
    recipe = load_recipe(recipe_path, [])
    ops = [build(name, recipe.operator_params(name), Storage()) for name in NAMES]
    batches = [pa.table({"text": texts[i: i + batch_size]}) for i in range(0, len(texts), batch_size)]

    def run() -> int:
        chain = Chain(ops, "filter")
        return sum(chain(batch)[0].num_rows for batch in batches)

    return run


def datatrove(texts: list[str]):
    """One run of datatrove's LanguageFilter, the per-language score bar and its three filters: a function
    returning the documents kept."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter
    from fasttext.FastText import _FastText

    lid = LanguageFilter(languages=None, language_threshold=0.0, label_only=True, keep_top_pairs_threshold=0.01)
    lid.model._model = _FastText(default_model_path())
    chains: dict[str, list | None] = {}

    def run() -> int:
        kept = 0
        for i, text in enumerate(texts):
            doc = Document(text=text, id=str(i))
            lid.filter(doc)
            language = code(doc.metadata["language"], text)
            config = language_config(language)
            if doc.metadata["language_score"] < (config["language_score"] if config else 0.65):
                continue
            if language not in chains:
                chains[language] = filters(language, fallback=True)
            chain = chains[language]
            if chain is None or all(f.filter(doc) is True for f in chain):
                kept += 1
        return kept

    return run


def best_times(runners: list, runs: int = 5) -> list[tuple[int, float]]:
    """(documents kept, best seconds) of each runner, their runs interleaved so that a busy spell of the
    machine slows both tools alike; one untimed run first (it loads every tokenizer)."""
    best = [(runner(), float("inf")) for runner in runners]
    for _ in range(runs):
        for i, runner in enumerate(runners):
            start = time.perf_counter()
            kept = runner()
            best[i] = (kept, min(best[i][1], time.perf_counter() - start))
    return best


def multilingual_rows(recipe_path: str, texts: list[str], peer: bool) -> list[tuple]:
    """Table rows (stage, docs, MB of text, seconds): ours, then datatrove's."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    runners = [ours(recipe_path, texts)] + ([datatrove(texts)] if peer else [])
    labels = ["ours: FineWeb2 chain, all languages", "datatrove: FineWeb2 chain, all languages"][: len(runners)]
    return [(label, len(texts), mb, s) for label, (_, s) in zip(labels, best_times(runners), strict=True)]
