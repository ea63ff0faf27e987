"""Our quality filters decide like datatrove's on real pages (run with -s to see the figures)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from jobs.curate.recipe import load_recipe
from operators.io.storage import Storage
from operators.registry import build
from tests.conftest import ROOT, need

NAMES = ("gopher_repetition", "gopher_quality", "c4", "fineweb_quality")


def ours():
    """The four filters exactly as the shipped fineweb recipe configures them."""
    recipe = load_recipe(str(ROOT / "jobs" / "recipes" / "fineweb.yaml"))
    return [build(name, recipe.operator_params(name), Storage()) for name in NAMES]


def theirs():
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]


@pytest.fixture(scope="module")
def texts(real_texts) -> list[str]:
    need("datatrove", "compare")
    return real_texts


def datatrove_first_failure(filters, texts: list[str]) -> list[str | None]:
    """Name of the first filter rejecting each text (``None``: kept); C4's cleaned text is fed on."""
    from datatrove.data import Document

    result = []
    for i, text in enumerate(texts):
        doc, failed = Document(text=text, id=str(i)), None
        for name, f in zip(NAMES, filters, strict=True):
            if f.filter(doc) is not True:
                failed = name
                break
        result.append(failed)
    return result


def our_first_failure(filters, texts: list[str]) -> list[str | None]:
    batch = pa.table({"text": texts})
    for f in filters:
        batch = f(batch)
    return [r.split(".")[0] if r else None for r in batch.column("filter_reason").to_pylist()]


def test_chain_agrees_with_datatrove(texts):
    start = time.perf_counter()
    ref = datatrove_first_failure(theirs(), texts)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    got = our_first_failure(ours(), texts)
    t_ours = time.perf_counter() - start
    keep = sum((a is None) == (b is None) for a, b in zip(got, ref, strict=True)) / len(texts)
    first = sum(a == b for a, b in zip(got, ref, strict=True)) / len(texts)
    print(f"\n{len(texts)} docs: keep/drop agreement {keep:.4f}, first-failing-filter agreement {first:.4f}")
    print(
        f"kept: ours {got.count(None)}, datatrove {ref.count(None)}; time ours {t_ours:.2f}s, "
        f"datatrove {t_ref:.2f}s"
    )
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        if a != b:
            print(f"  doc {i}: ours {a}, datatrove {b}")
    assert keep >= 0.99


@pytest.mark.parametrize("index", range(4), ids=NAMES)
def test_each_filter_agrees_with_datatrove(texts, index):
    from datatrove.data import Document

    theirs_f, ours_f = theirs()[index], ours()[index]
    ref = [theirs_f.filter(Document(text=t, id=str(i))) is True for i, t in enumerate(texts)]
    got = [r is None for r in ours_f(pa.table({"text": texts})).column("filter_reason").to_pylist()]
    agree = sum(a == b for a, b in zip(got, ref, strict=True)) / len(texts)
    print(f"\n{NAMES[index]} alone: decision agreement {agree:.4f} ({sum(ref)} kept by datatrove)")
    assert agree >= 0.99
