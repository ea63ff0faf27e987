"""End a Ray Data run whose cluster lost CPUs it was sized for, so the job can re-plan on the nodes left.

A stage that sizes its actor pools from the cluster's CPUs at start cannot place an actor lost with a
node when the nodes left are too small for it: Ray keeps the actor restarting and Ray Data waits out
its no-progress bound. A callback on Ray Data's scheduling loop (it runs in the driver's executor
thread) reads the alive CPUs every few seconds and ends the run with :class:`ClusterShrank`, which
reaches the loop reading the dataset; the job then plans its unfinished shards again for what is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from ray.data._internal.execution.execution_callback import ExecutionCallback

CHECK_S = 5.0
MAX_REPLANS = 3  # a cluster that keeps losing nodes ends the job after this many re-plans


class ClusterShrank(RuntimeError):
    """The cluster has fewer CPUs than the run was sized for."""

    def __init__(self, sized_for: float, cpus: float):
        super().__init__(f"the cluster went from {sized_for:g} to {cpus:g} CPU(s) (a node lost)")
        self.sized_for, self.cpus = sized_for, cpus


class ShrinkWatch(ExecutionCallback):
    """Raises :class:`ClusterShrank` from the scheduling loop when the alive CPUs fall under ``sized_for``."""

    sized_for = 0.0  # set by watching(); Ray Data makes its callbacks from their classes, without arguments

    def __init__(self):
        self.next_check = 0.0  # the first step checks: the cluster may have shrunk since the run was sized

    def on_execution_step(self, executor) -> None:
        import ray

        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + CHECK_S
        cpus = ray.cluster_resources().get("CPU", 0.0)
        if cpus < ShrinkWatch.sized_for:
            raise ClusterShrank(ShrinkWatch.sized_for, cpus)


@contextmanager
def watching(cpus: float) -> Iterator[None]:
    """Ray Data runs started inside end with :class:`ClusterShrank` when the cluster falls under ``cpus`` CPUs."""
    import ray

    callbacks = ray.data.DataContext.get_current().custom_execution_callback_classes
    ShrinkWatch.sized_for = cpus
    callbacks.append(ShrinkWatch)
    try:
        yield
    finally:
        callbacks.remove(ShrinkWatch)


def replanning(run: Callable[[Collection[str]], None], todo: Collection[str],
               unfinished: Callable[[Collection[str]], Collection[str]], retried: list[dict],
               log: logging.Logger) -> None:
    """``run(todo)`` (shard keys); each time it raises :class:`ClusterShrank`, ``run`` again on ``unfinished(todo)``,
    those shards added to ``retried``; a cluster that shrinks more than ``MAX_REPLANS`` times ends it in one line."""
    for replans in range(MAX_REPLANS + 1):
        try:
            run(todo)
            return
        except ClusterShrank as shrunk:
            todo = unfinished(todo)
            if replans == MAX_REPLANS:
                raise RuntimeError(f"the cluster lost CPUs {replans + 1} times in one run (last, {shrunk}); "
                                   "stopped") from shrunk
            log.warning("%s: planning the %d unfinished shard(s) again for the nodes left", shrunk, len(todo))
            retried += [{"shard": key, "error": f"unfinished when {shrunk}"} for key in todo]
