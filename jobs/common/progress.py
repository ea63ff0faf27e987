"""Progress of a long job, one log line per finished shard: shards done / total, docs/s, ETA; and for
generation (:class:`RequestProgress`), requests done / made, shards finished, tokens/s, ETA.

The line goes to the driver's log, which is the job's log in the Ray dashboard (Jobs -> Logs) and
in ``ray job logs`` / ``make logs``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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


class RequestProgress:
    """Counts of a generation stream: requests made (per shard, as the workers make them), results back,
    tokens generated, shards finished. :meth:`line` reads them from any thread."""

    def __init__(self, stage: str, shards: int, clock: Callable[[], float] = time.monotonic):
        self.stage, self.shards, self.clock = stage, shards, clock
        self.made: dict[str, int] = {}
        self.done = self.tokens = self.finished = 0
        self.started = clock()
        self.lock = threading.Lock()

    def requests_made(self, by_shard: dict[str, int]) -> None:
        with self.lock:
            self.made.update(by_shard)

    def returned(self, rows: int, tokens: int) -> None:
        with self.lock:
            self.done, self.tokens = self.done + rows, self.tokens + tokens

    def shard_finished(self) -> None:
        with self.lock:
            self.finished += 1

    def line(self) -> str:
        """``progress generate: 12/48 requests, 3 of 5 shards, 41.2 tokens/s, ETA 3m10s``: requests back of
        those made (``48+`` while some shards' requests are still being made; the ETA then counts the
        others at the made shards' average), shards finished of all, output tokens per second since start."""
        with self.lock:
            elapsed = max(self.clock() - self.started, 1e-9)
            made, shards_made = sum(self.made.values()), len(self.made)
            total = made if shards_made >= self.shards else (made / shards_made * self.shards if shards_made else 0)
            if self.done and total > self.done:
                eta = _duration(elapsed / self.done * (total - self.done))
            else:
                eta = "0m00s" if self.done and shards_made >= self.shards else "unknown"
            more = "" if shards_made >= self.shards else "+"
            return (f"progress {self.stage}: {self.done}/{made}{more} requests, {self.finished} of {self.shards} "
                    f"shards, {self.tokens / elapsed:.1f} tokens/s, ETA {eta}")

    def log(self) -> str:
        line = self.line()
        log.info(line)
        return line
