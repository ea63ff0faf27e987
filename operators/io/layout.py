"""Where a run's files go (DESIGN.md, "Output layout and resume")."""

from __future__ import annotations

from dataclasses import dataclass

from operators.io.storage import join


def shard_of(path: str) -> tuple[str, str]:
    """(crawl, shard) of a stage output file ``.../<crawl>/<shard>.parquet``."""
    crawl, name = path.rstrip("/").split("/")[-2:]
    return crawl, name.removesuffix(".parquet")


@dataclass(frozen=True)
class Layout:
    root: str
    run: str
    stage: str

    @property
    def stage_dir(self) -> str:
        return join(self.root, self.run, self.stage)

    def data(self, crawl: str, shard: str) -> str:
        return join(self.stage_dir, crawl, f"{shard}.parquet")

    def rejected(self, crawl: str, shard: str) -> str:
        return join(self.root, self.run, "rejected", crawl, f"{shard}.parquet")

    @property
    def ledger_dir(self) -> str:
        return join(self.stage_dir, "_ledger")

    def ledger(self, shard: str) -> str:
        return join(self.ledger_dir, f"{shard}.json")

    @property
    def stats(self) -> str:
        return join(self.stage_dir, "_stats.json")
