"""One shard against the index: where its documents hold evaluation n-grams (both passes), how many documents
hold each (the first pass), and the shard with the contaminated documents removed, or their matches cut out
(the second pass, ``mode: spans``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.decontam.index import EvalIndex
from operators.decontam.ngrams import ngram_hashes
from operators.decontam.words import words
from operators.quality.summary import token_counts

CHUNK_CHARS = 1 << 23  # characters tokenised at once (about 100 MB of numpy arrays)
PIECE_JOIN = "\n"  # between the pieces left of a cut document


@dataclass
class Hits:
    """Every index n-gram found, sorted by document and position: its entry, its characters, its words."""

    doc: np.ndarray
    entry: np.ndarray
    start: np.ndarray
    end: np.ndarray
    ngram: list[str]

    def take(self, rows: np.ndarray) -> Hits:
        return Hits(self.doc[rows], self.entry[rows], self.start[rows], self.end[rows],
                    [self.ngram[i] for i in rows.tolist()])


def _chunks(texts: list[str | None]) -> Iterator[tuple[int, int]]:
    lo, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text or "")
        if size >= CHUNK_CHARS:
            yield lo, i + 1
            lo, size = i + 1, 0
    if lo < len(texts):
        yield lo, len(texts)


def find_hits(texts: list[str | None], index: EvalIndex) -> Hits:
    """The index's n-grams in ``texts``: every length it holds, all n-grams of a chunk of texts at once."""
    parts = []
    for lo, hi in _chunks(texts):
        w = words(texts[lo:hi], index.normalisation)
        for length in index.lengths:
            q1, q2, first = ngram_hashes(w, length)
            entry = index.find(q1, q2)
            found = entry >= 0
            first = first[found]
            parts.append(Hits(lo + w.text[first], entry[found], w.start[first], w.end[first + length - 1],
                              [w.normalised(f, length) for f in first.tolist()]))
    if not parts:
        return Hits(*(np.zeros(0, np.int64) for _ in range(4)), [])
    hits = Hits(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("doc", "entry", "start", "end")),
                [s for p in parts for s in p.ngram])
    return hits.take(np.lexsort((hits.end, hits.start, hits.doc)))


def doc_counts(hits: Hits) -> dict[int, tuple[int, str]]:
    """Per entry found: in how many documents, and its n-gram (as normalised)."""
    if not len(hits.doc):
        return {}
    pairs, first = np.unique(np.stack([hits.entry, hits.doc], axis=1), axis=0, return_index=True)
    entries, docs = np.unique(pairs[:, 0], return_counts=True)
    example = dict(zip(pairs[:, 0].tolist(), first.tolist(), strict=True))
    return {e: (d, hits.ngram[example[e]]) for e, d in zip(entries.tolist(), docs.tolist(), strict=True)}


def _cuts(text: str, starts: list[int], ends: list[int], span_chars: int) -> list[tuple[int, int]]:
    """The character ranges to cut: each match and ``span_chars`` around it, widened to whole words, merged."""
    ranges = []
    for start, end in zip(starts, ends, strict=True):
        lo, hi = max(0, start - span_chars), min(len(text), end + span_chars)
        while lo > 0 and not text[lo - 1].isspace():
            lo -= 1
        while hi < len(text) and not text[hi].isspace():
            hi += 1
        if ranges and lo <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))
        else:
            ranges.append((lo, hi))
    return ranges


def _pieces(text: str, ranges: list[tuple[int, int]]) -> list[str]:
    bounds = [0, *[b for r in ranges for b in r], len(text)]
    return [p for p in (text[a:b].strip() for a, b in zip(bounds[::2], bounds[1::2], strict=True)) if p]


def decontaminate(table: pa.Table, hits: Hits, index: EvalIndex, ignored: np.ndarray, mode: str, span_chars: int,
                  max_splits: int) -> tuple[pa.Table, pa.Table | None, dict]:
    """(kept documents, removals with ``decontam_*`` columns or None, summary). ``ignored`` entries do not count.
    A document with a hit is removed; with ``mode: spans`` its matches are cut (:func:`_cuts`) and the pieces
    left joined by a newline, unless none is left or more than ``max_splits``: then it is removed whole."""
    texts = table.column("text")
    tokens = token_counts(texts)
    hits = hits.take(np.flatnonzero(~np.isin(hits.entry, ignored)))
    docs, first = np.unique(hits.doc, return_index=True)
    summary = {"docs": table.num_rows, "tokens": int(tokens.sum()), "removed": 0, "cut": 0, "tokens_removed": 0,
               "null_text": texts.null_count, "benchmarks": {}}
    keep = np.ones(table.num_rows, bool)
    cut_docs, cut_texts, spans, actions = [], [], [], []
    bounds = np.append(first, len(hits.doc)).tolist()
    originals = texts.take(pa.array(docs)).to_pylist()
    for i, (doc, text) in enumerate(zip(docs.tolist(), originals, strict=True)):
        lo, hi = bounds[i], bounds[i + 1]
        pieces, ranges = [], []
        if mode == "spans":
            ranges = _cuts(text, hits.start[lo:hi].tolist(), hits.end[lo:hi].tolist(), span_chars)
            pieces = _pieces(text, ranges)
        spans.append([text[a:b] for a, b in ranges] if mode == "spans" else None)
        whole = not pieces or len(pieces) > max_splits
        actions.append("document" if whole else "spans")
        bench = summary["benchmarks"].setdefault(index.names[index.benchmark[hits.entry[lo]]],
                                                 {"documents": 0, "cut": 0, "tokens": 0})
        if whole:
            keep[doc] = False
            removed = int(tokens[doc])
        else:
            cut_docs.append(doc)
            cut_texts.append(PIECE_JOIN.join(pieces))
            removed = int(tokens[doc] - token_counts(pa.array(cut_texts[-1:]))[0])
        bench["documents" if whole else "cut"] += 1
        bench["tokens"] += removed
        summary["tokens_removed"] += removed
    summary["removed"] = int((~keep).sum())
    summary["cut"] = len(cut_docs)
    kept = table
    if cut_docs:
        mask = np.zeros(table.num_rows, bool)
        mask[cut_docs] = True
        column = pc.replace_with_mask(texts.combine_chunks(), pa.array(mask), pa.array(cut_texts, texts.type))
        kept = table.set_column(table.schema.get_field_index("text"), table.schema.field("text"), column)
    kept = kept.filter(pa.array(keep))
    if not len(docs):
        return kept, None, summary
    rejected = table.take(pa.array(docs))
    extra = {"decontam_benchmark": [index.names[index.benchmark[hits.entry[f]]] for f in first.tolist()],
             "decontam_ngram": [hits.ngram[f] for f in first.tolist()], "decontam_action": actions}
    for name, values in extra.items():
        rejected = rejected.append_column(pa.field(name, pa.string()), pa.array(values, pa.string()))
    rejected = rejected.append_column(pa.field("decontam_spans", pa.list_(pa.string())),
                                      pa.array(spans, pa.list_(pa.string())))
    return kept, rejected, summary
