"""Progress of a long job, one log line per finished shard: shards done / total, docs/s, ETA.

The line goes to the driver's log, which is the job's log in the Ray dashboard (Jobs -> Logs) and
in ``ray job logs`` / ``make logs``.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("cc_refinery.progress")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Counts finished shards and their documents against the shards to do; logs each step."""

    def __init__(self, stage: str, total: int):
        self.stage, self.total, self.shards, self.docs = stage, total, 0, 0
        self.started = time.monotonic()

    def shard_done(self, docs: int) -> str:
        self.shards, self.docs = self.shards + 1, self.docs + docs
        elapsed = max(time.monotonic() - self.started, 1e-9)
        eta = elapsed / self.shards * (self.total - self.shards)
        line = (f"progress {self.stage}: {self.shards}/{self.total} shards, {self.docs} docs, "
                f"{self.docs / elapsed:.1f} docs/s, ETA {_duration(eta)}")
        log.info(line)
        return line
