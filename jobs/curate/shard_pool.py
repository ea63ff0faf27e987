"""Run shards on a pool of Ray actors, one shard at a time each, the driver handing out the next.

Each actor is a separate process that Ray restarts if it dies (a native crash in a reader, parser
or model, an OOM kill, a preempted node). A shard goes only to an actor that is up and idle: the
actor first answers a ready call (which names its node), and only then takes the next shard from
the queue, so no shard waits on an actor that is restarting or cannot be placed. A shard whose
actor died under it goes back to the queue for the next free actor, listed under ``retried``; it
counts as failed once its actor died ``ATTEMPTS`` times under it on nodes that are still alive (a
crash of its own), never for a node that was lost (a preempted node, whose calls Ray may never
answer: the driver asks Ray which nodes are alive every ``NODE_CHECK_S`` while shards run). An
actor that died gets no work until it answers again; one that Ray reports gone
(``ActorDiedError``) or that is not back within ``RESTART_WINDOW_S`` leaves the work to the
others. Actors that cannot be placed (no free CPU) get no work either: the pool runs with those
that are up, says so (after ``PLACEMENT_WINDOW_S`` or at the end), and fails naming it if none is up by
then. The driver holds only shard names and ledger entries. A plain actor pool, not Ray Data: a list
of whole shards needs no streaming executor, and dropping it takes seconds off every run.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

from jobs.common.llm_cluster import error_line
from jobs.common.node import current_node

log = logging.getLogger("cc_refinery.pool")
RESTARTS = 4  # per actor; a crash while loading the recipe's models fails every call instead
ATTEMPTS = 2  # a shard whose actor died under it (its node alive) is run once more before it counts as failed
RESTART_WINDOW_S = 600  # for a failed actor to answer again: a CPU found for it (on a node that replaces a
# preempted one, after the autoscaler adds it) and the recipe's models loaded once more
PLACEMENT_WINDOW_S = 600  # for the first actors to be placed and load their models (an autoscaler adding nodes)
NODE_CHECK_S = 5.0  # how often the driver asks Ray which nodes are alive while shards run


def alive_cpus() -> int:
    """CPUs of the nodes Ray reports alive (``ray.cluster_resources()`` counts a lost node until Ray's health check
    marks it dead)."""
    import ray

    return int(sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]))


def _alive_nodes() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _node_id(_actor) -> str:
    """Run on the actor (``__ray_call__``): the id of the node it runs on."""
    return current_node()


class ShardPool:
    """``workers`` actors of ``runner(*args)``, started at once (they load their models while the driver
    plans); ``run(todo)`` hands them the shards."""

    def __init__(self, runner: type, args: tuple, workers: int):
        import ray

        actor_class = ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=0)(runner)
        self.actors = [actor_class.remote(*args) for _ in range(workers)]
        self.retried: list[dict] = []  # shards whose worker died under it, run again
        self.nodes: dict[int, str] = {}  # actor index -> the node it last answered from
        self._asked = {self._ready(i): i for i in range(workers)}  # ready call -> actor: answered once it is up
        self._waiting: dict = {}  # ready call held through a restart -> (actor, deadline)
        self._idle: list[int] = []
        self._placement = time.monotonic() + PLACEMENT_WINDOW_S  # None once said or every actor answered

    def _ready(self, i: int, through_restart: bool = False):
        call = self.actors[i].__ray_call__
        return (call.options(max_task_retries=-1) if through_restart else call).remote(_node_id)

    def run(self, todo: list[dict]) -> Iterator[dict]:
        """Yield one ledger entry (or the item with an ``error``) per item of ``todo`` (``runner.run``'s
        keyword arguments) as each finishes."""
        import ray
        from ray.exceptions import RayActorError

        queue = deque((item, []) for item in todo)  # (item, nodes its actors died on)
        asked, waiting, idle = self._asked, self._waiting, self._idle
        running: dict = {}  # run call -> (actor, node, item, deaths)
        lost = "no worker was started"
        checked = time.monotonic()

        def wait_for(i: int, why: str) -> None:
            log.warning("%s; it gets no work until it answers again", why)
            waiting[self._ready(i, through_restart=True)] = (i, time.monotonic() + RESTART_WINDOW_S)

        def up(i: int, ref) -> None:
            self.nodes[i] = ray.get(ref)
            if queue:
                item, deaths = queue.popleft()
                running[self.actors[i].run.remote(**item)] = (i, self.nodes[i], item, deaths)
            else:
                idle.append(i)

        def requeue(i: int, node: str, item: dict, deaths: list[str], why: str, alive: set[str]) -> str | None:
            """Put the shard back (listed under ``retried``); the error if its own crashes (on the ``alive`` nodes)
            used up its attempts."""
            wait_for(i, f"a worker died on {item['shard']} ({why})")
            deaths = [*deaths, node]
            if sum(n in alive for n in deaths) >= ATTEMPTS:
                return f"worker process died {len(deaths)} times on this shard: {why}"
            self.retried.append({**item, "error": why})
            queue.appendleft((item, deaths))
            return None

        while queue or running:
            while queue and idle:  # asked first: it may have died since it was last seen
                i = idle.pop()
                asked[self._ready(i)] = i
            if not (asked or running or waiting):
                while queue:
                    yield {**queue.popleft()[0], "error": f"no worker left to run it: {lost}"}
                return
            deadlines = [d for _, d in waiting.values()]
            deadlines += [self._placement] if self._placement is not None else []
            deadlines += [checked + NODE_CHECK_S] if running else []
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            done, _ = ray.wait([*asked, *running, *waiting], num_returns=1, timeout=timeout)
            ref = done[0] if done else None
            if ref in asked:
                i = asked.pop(ref)
                if (failure := _failure(ref)) is None:
                    up(i, ref)
                else:  # restarting or gone: no shard was bound to it
                    wait_for(i, f"a worker did not answer ({failure})")
            elif ref in waiting:
                i, _ = waiting.pop(ref)
                if (failure := _failure(ref)) is None:
                    log.info("a worker answers again")
                    up(i, ref)
                else:
                    lost = f"a worker is gone: {failure}"
                    log.warning("%s; its work goes to the others", lost)
            elif ref in running:
                i, node, item, deaths = running.pop(ref)
                try:
                    entry = ray.get(ref)
                except RayActorError as err:
                    if (error := requeue(i, node, item, deaths, error_line(err), _alive_nodes())) is not None:
                        yield {**item, "error": error}
                else:
                    idle.append(i)
                    yield entry
            now = time.monotonic()
            for call, (_, deadline) in list(waiting.items()):
                if now >= deadline:
                    del waiting[call]
                    lost = f"a worker was not back {RESTART_WINDOW_S} s after it died"
                    log.warning("%s; its work goes to the others", lost)
            if self._placement is not None and (now >= self._placement or len(self.nodes) == len(self.actors)):
                if not self.nodes:
                    raise RuntimeError(f"none of the {len(self.actors)} workers (1 CPU each) was placed and up "
                                       f"within {PLACEMENT_WINDOW_S} s: the alive Ray nodes have {alive_cpus()} CPUs")
                self._placed()
            if running and now >= checked + NODE_CHECK_S:
                checked, alive = now, _alive_nodes()
                for call, (i, node, item, deaths) in list(running.items()):
                    if node not in alive:  # a lost node's calls may never be answered
                        del running[call]
                        requeue(i, node, item, deaths, f"its node {node[:8]} was lost", alive)
        if self._placement is not None and len(self.nodes) < len(self.actors):  # done before the window ended
            self._placed()

    def _placed(self) -> None:
        """Say, once, how many workers never answered (not placed for want of a CPU, or still loading)."""
        if len(self.nodes) < len(self.actors):
            log.warning("%d of %d workers were not up (no free CPU for them on the alive Ray nodes, or still "
                        "starting): ran with %d", len(self.actors) - len(self.nodes), len(self.actors), len(self.nodes))
        self._placement = None


def _failure(ref) -> str | None:
    """None when the finished actor call ``ref`` succeeded, else why not, on one line."""
    import ray
    from ray.exceptions import RayActorError

    try:
        ray.get(ref, timeout=0)
    except RayActorError as err:
        return error_line(err)
    return None
