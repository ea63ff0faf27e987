"""Where a run's files go (DESIGN.md, "Output layout and resume")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from operators.io.storage import join

SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}_[A-Z][a-z]{3}")  # FineWeb2's ISO 639-3 + script codes, e.g. deu_Latn
# a language folder of a stage written per language: a FineWeb2 code, or ``und`` (no language)
LANGUAGE_FOLDER = re.compile(rf"{LANGUAGE_CODE.pattern}|und")


def safe_segment(name: str | None) -> bool:
    """Whether ``name`` can be one folder or file name under the output root: no separators, no
    ``..``, not hidden (dataset readers skip ``_``/``.`` names)."""
    return bool(name) and SAFE_SEGMENT.fullmatch(name) is not None and ".." not in name


def _checked(*names: str) -> None:
    for name in names:
        if not safe_segment(name):
            raise ValueError(f"{name!r} is not a safe output folder or file name")


def shard_of(path: str) -> tuple[str, str]:
    """(crawl, shard) of a stage output file ``.../<crawl>/<shard>.parquet``; in a stage written per language
    (``.../<language>/<crawl>/<shard>.parquet``) the crawl is ``<language>/<crawl>``, so that the languages'
    files of one shard stay apart in every later stage."""
    parts = path.rstrip("/").split("/")
    crawl, name = parts[-2:]
    if len(parts) > 2 and LANGUAGE_FOLDER.fullmatch(parts[-3]):
        crawl = f"{parts[-3]}/{crawl}"
    return crawl, name.removesuffix(".parquet")


def shard_key(path: str) -> str:
    """``<crawl>/<shard>`` of a stage output file: how ledgers and later stages name its shard."""
    return "/".join(shard_of(path))


@dataclass(frozen=True)
class Layout:
    root: str
    run: str
    stage: str

    @property
    def stage_dir(self) -> str:
        return join(self.root, self.run, self.stage)

    def data(self, crawl: str, shard: str, language: str | None = None) -> str:
        """The shard's output file; ``language``: in that language's folder (``und`` when it has none)."""
        _checked(crawl, shard)
        if language is None:
            return join(self.stage_dir, crawl, f"{shard}.parquet")
        return join(self.stage_dir, language if LANGUAGE_FOLDER.fullmatch(language) else "und", crawl,
                    f"{shard}.parquet")

    def rejected(self, crawl: str, shard: str) -> str:
        _checked(crawl, shard)
        return join(self.root, self.run, "rejected", crawl, f"{shard}.parquet")

    @property
    def ledger_dir(self) -> str:
        return join(self.stage_dir, "_ledger")

    def ledger(self, shard: str) -> str:
        _checked(shard)
        return join(self.ledger_dir, f"{shard}.json")

    @property
    def stats(self) -> str:
        return join(self.stage_dir, "_stats.json")
