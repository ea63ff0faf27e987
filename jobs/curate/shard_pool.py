"""Run shards on a pool of Ray actors, one shard at a time each, the driver handing out the next.

Each actor is a separate process that Ray restarts if it dies (a native crash in a reader, parser
or model, an OOM kill, a preempted node): the shard it was running is tried once more on the next
free actor, then reported failed. A shard is sent only to an actor that has just answered a ready
call, so a refusal while Ray restarts an actor (``ActorUnavailableError``) never counts as a death
under the shard; an actor that died gets no work until it answers again, and one that Ray reports
gone (``ActorDiedError``) or that is not back within ``RESTART_WINDOW_S`` leaves the work to the
others. The driver holds only shard names and ledger entries. A plain actor pool, not Ray Data: a
list of whole shards needs no streaming executor, and dropping it takes seconds off every run.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

from jobs.common.llm_cluster import error_line

log = logging.getLogger("cc_refinery.pool")
RESTARTS = 4  # per actor; a crash while loading the recipe's models fails every call instead
ATTEMPTS = 2  # a shard whose actor died under it is run once more before it counts as failed
RESTART_WINDOW_S = 600  # for a failed actor to answer again: a CPU found for it (on a node that replaces a
# preempted one, after the autoscaler adds it) and the recipe's models loaded once more


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
        idle = deque(self.actors)
        asked: dict = {}  # ready call -> (actor, item, attempt): the shard it gets once it answers
        running: dict = {}  # run call -> (actor, item, attempt)
        waiting: dict = {}  # ready call held through a restart -> (actor, deadline)
        lost = "no worker was started"

        def wait_for(actor, why: str) -> None:
            log.warning("%s; it gets no work until it answers again", why)
            waiting[_back(actor)] = (actor, time.monotonic() + RESTART_WINDOW_S)

        while queue or asked or running:
            while queue and idle:
                actor = idle.popleft()
                asked[actor.__ray_ready__.remote()] = (actor, *queue.popleft())
            if not (asked or running or waiting):
                while queue:
                    yield {**queue.popleft()[0], "error": f"no worker left to run it: {lost}"}
                return
            deadline = min((d for _, d in waiting.values()), default=None)
            done, _ = ray.wait([*asked, *running, *waiting], num_returns=1,
                               timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            ref = done[0] if done else None
            if ref in asked:
                actor, item, attempt = asked.pop(ref)
                if (failure := _failure(ref)) is None:
                    running[actor.run.remote(**item)] = (actor, item, attempt)
                else:  # restarting or gone: the shard never reached it, no attempt spent
                    queue.appendleft((item, attempt))
                    wait_for(actor, f"a worker did not answer ({failure})")
            elif ref in waiting:
                actor, _ = waiting.pop(ref)
                if (failure := _failure(ref)) is None:
                    log.info("a worker answers again")
                    idle.append(actor)
                else:
                    lost = f"a worker is gone: {failure}"
                    log.warning("%s; its work goes to the others", lost)
            elif ref in running:
                actor, item, attempt = running.pop(ref)
                try:
                    entry = ray.get(ref)
                except RayActorError as err:
                    wait_for(actor, f"a worker died on {item['shard']} ({error_line(err)})")
                    if attempt < ATTEMPTS:
                        self.retried.append({**item, "error": error_line(err)})
                        queue.appendleft((item, attempt + 1))
                    else:
                        yield {**item, "error": f"worker process died {attempt} times on this shard: {error_line(err)}"}
                else:
                    idle.append(actor)
                    yield entry
            for call, (_, deadline) in list(waiting.items()):
                if time.monotonic() >= deadline:
                    del waiting[call]
                    lost = f"a worker was not back {RESTART_WINDOW_S} s after it died"
                    log.warning("%s; its work goes to the others", lost)


def _back(actor):
    """A call that Ray holds through the actor's restart: answered once it is up again, failed once it is gone."""
    return actor.__ray_ready__.options(max_task_retries=-1).remote()


def _failure(ref) -> str | None:
    """None when the finished actor call ``ref`` succeeded, else why not, on one line."""
    import ray
    from ray.exceptions import RayActorError

    try:
        ray.get(ref, timeout=0)
    except RayActorError as err:
        return error_line(err)
    return None
