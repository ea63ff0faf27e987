"""Run shards on a pool of Ray actors, one shard at a time each, the driver handing out the next.

Each actor is a separate process that Ray restarts if it dies (a native crash in a reader, parser
or model): the shard it was running is tried once more on the restarted actor, then reported
failed. The driver holds only shard names and ledger entries. A plain actor pool, not Ray Data:
a list of whole shards needs no streaming executor, and dropping it takes seconds off every run.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

from jobs.llm_cluster import error_line

log = logging.getLogger("cc_refinery.pool")
RESTARTS = 4  # per actor; a crash while loading the recipe's models fails every call instead
ATTEMPTS = 2  # a shard whose actor died is run once more before it counts as failed


class ShardPool:
    """``workers`` actors of ``runner(*args)``, started at once (they load their models while the driver
    plans); ``run(todo)`` hands them the shards."""

    def __init__(self, runner: type, args: tuple, workers: int):
        import ray

        actor_class = ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=0)(runner)
        self.actors = [actor_class.remote(*args) for _ in range(workers)]
        self.retried: list[dict] = []  # shards whose worker died under them, run again

    def run(self, todo: list[dict]) -> Iterator[dict]:
        """Yield one ledger entry (or the item with an ``error``) per item of ``todo`` (``runner.run``'s
        keyword arguments) as each finishes."""
        import ray
        from ray.exceptions import RayActorError

        queue = deque((item, 1) for item in todo)
        running: dict = {}

        def submit(actor) -> None:
            if queue:
                item, attempt = queue.popleft()
                running[actor.run.remote(**item)] = (actor, item, attempt)

        for actor in self.actors:
            submit(actor)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, item, attempt = running.pop(ref)
            try:
                yield ray.get(ref)
            except RayActorError as err:
                if attempt < ATTEMPTS:
                    log.warning("worker died on %s (%s): running it again", item["shard"], error_line(err))
                    self.retried.append({**item, "error": error_line(err)})
                    queue.appendleft((item, attempt + 1))
                else:
                    yield {**item, "error": f"worker process died {attempt} times on this shard: {error_line(err)}"}
            submit(actor)
