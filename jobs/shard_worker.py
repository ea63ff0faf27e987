"""The curation job's worker: a Ray actor that hands each shard to a child process it keeps.

The child walls off native-code crashes (readers, parsers, models): if it dies, that shard is
reported failed and a new child is started for the next one. The actor itself imports little:
the child loads the operators (and, for extraction, keeps a killable process of its own).
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_runner = None


def _start_child(recipe: dict, signals: dict) -> None:
    from jobs.config import Recipe
    from jobs.shard_runner import ShardRunner

    global _runner
    _runner = ShardRunner(Recipe.model_validate(recipe), signals)


def _run_in_child(uri: str, shard: str) -> dict:
    return _runner(uri, shard)


def _ready() -> bool:
    return _runner is not None


class ShardWorker:
    """Ray Data actor: one row per shard in, one ledger entry (JSON) out."""

    def __init__(self, recipe: dict, signals: dict):
        self.args = (recipe, signals)
        self.pool = self._new_child()

    def _new_child(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_child, initargs=self.args)
        pool.submit(_ready)  # start the child (and load its models) now, not on the first shard
        return pool

    def __call__(self, batch: dict) -> dict[str, list]:
        entries = []
        for uri, shard in zip(batch["uri"], batch["shard"], strict=True):
            try:
                entry = self.pool.submit(_run_in_child, str(uri), str(shard)).result()
            except BrokenProcessPool as err:
                entry = {"shard": str(shard), "source": str(uri), "error": f"worker process died: {err}"}
                self.pool = self._new_child()
            entries.append(json.dumps(entry))
        return {"entry": entries}
