"""Spark standalone on the Ray cluster: a master beside the driver, one Spark worker per Ray node.

RayDP, the usual way to run Spark on Ray, does not support PySpark 4, which the dedup job uses.
Spark's own standalone cluster needs nothing but the pyspark package and Java on every node, so
the job starts it itself: the master as a child of the driver, and on each Ray node with CPUs an
actor pinned to that node that reserves the node's CPUs and runs a Spark worker as its child.
Nothing is configured on the cluster beyond Java; everything stops when the job ends. Spark reruns the
tasks of a lost worker (its Ray node preempted) on the others; when none is left, Spark itself would wait for
one forever, so a watch cancels the job after ``LOST_GRACE_S`` and names the loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from jobs.common.processes import stop_group

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STOP_GRACE_S = 20  # after SIGTERM, before SIGKILL
LOST_GRACE_S = 30  # with no Spark worker alive, before the job is cancelled
WATCH_EVERY_S = 2


def _spark_class() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return os.path.join(_find_spark_home(), "bin", "spark-class")


def _spark(folder: str, log: str, env: dict, *args: str) -> subprocess.Popen:
    """``spark-class <args>`` in its own session, its logs in ``folder`` (stderr in ``folder/log``)."""
    with open(os.path.join(folder, log), "wb") as err:
        return subprocess.Popen([_spark_class(), *args], env={**env, "SPARK_LOG_DIR": folder},
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@ray.remote(num_cpus=0)
class SparkWorker:
    """A Spark standalone worker on this actor's node, stopped with the actor."""

    def __init__(self, master: str, cores: int, memory_mb: int):
        self.folder = tempfile.mkdtemp(prefix="spark-worker-")
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        host = ray.util.get_node_ip_address()
        self.proc = _spark(self.folder, "worker.log", env, WORKER_CLASS, "--host", host, "--cores", str(cores),
                           "--memory", f"{memory_mb}m", "--work-dir", self.folder, "--webui-port",
                           str(_free_port()), master)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        with open(os.path.join(self.folder, "worker.log"), "rb") as log:
            return log.read()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc, STOP_GRACE_S)


def ray_nodes() -> list[dict]:
    """Alive Ray nodes with CPUs: node id, CPUs, memory (bytes) as Ray accounts them."""
    return [{"id": n["NodeID"], "cpus": int(n["Resources"]["CPU"]), "memory": n["Resources"].get("memory", 0)}
            for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]


def _alive_workers(ui: str) -> int:
    with urllib.request.urlopen(f"{ui}/json/", timeout=5) as response:
        return sum(w.get("state") == "ALIVE" for w in json.load(response).get("workers", []))


@dataclass
class SparkCluster:
    """A running standalone cluster: its master URL, the Spark settings that use it, and its watch."""

    master: str
    conf: dict[str, str]
    ui: str
    lost: str | None = None  # why the watch cancelled the job
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, cancel: Callable[[], None]) -> None:
        """Call ``cancel`` (and say why in ``lost``) while no Spark worker has been alive for ``LOST_GRACE_S``."""
        threading.Thread(target=self._watch, args=(cancel,), name="spark-workers-watch", daemon=True).start()

    def _watch(self, cancel: Callable[[], None]) -> None:
        since = None
        while not self._stop.wait(WATCH_EVERY_S):
            with contextlib.suppress(OSError, ValueError):
                alive = _alive_workers(self.ui)
                since = None if alive else since or time.monotonic()
            if since is not None and time.monotonic() - since > LOST_GRACE_S:  # and every job started after
                self.lost = (f"spark.master=ray: no Spark worker alive for {LOST_GRACE_S} s (their Ray nodes "
                             f"lost?); the output has no _stats.json yet: run the job again")
                cancel()


@contextlib.contextmanager
def spark_on_ray(memory_fraction: float, start_timeout_s: float) -> Iterator[SparkCluster]:
    """Start the standalone cluster on the connected Ray; yield it.

    Fails within ``start_timeout_s`` naming what did not come up (a node's CPUs taken, no Java).
    """
    nodes = ray_nodes()
    if not nodes:
        raise RuntimeError("spark.master=ray: the Ray cluster has no node with CPUs")
    host, port, ui_port = ray.util.get_node_ip_address(), _free_port(), _free_port()
    master, ui = f"spark://{host}:{port}", f"http://{host}:{ui_port}"
    proc = _spark(tempfile.mkdtemp(prefix="spark-master-"), "master.log", dict(os.environ), MASTER_CLASS,
                  "--host", host, "--port", str(port), "--webui-port", str(ui_port))
    workers = []
    try:
        memory_mb = [max(1024, int(n["memory"] * memory_fraction) >> 20) for n in nodes]
        workers = [SparkWorker.options(num_cpus=n["cpus"], scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["id"], soft=False)).remote(master, n["cpus"], mb) for n, mb in zip(nodes, memory_mb, strict=True)]
        _wait_ready(proc, ui, workers, start_timeout_s)
        cluster = SparkCluster(master, {"spark.driver.host": host,
                                        "spark.executor.memory": f"{int(min(memory_mb) * 0.8)}m",
                                        "spark.cores.max": str(sum(n["cpus"] for n in nodes))}, ui)
        try:
            yield cluster
        finally:
            cluster._stop.set()
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                ray.get(worker.stop.remote(), timeout=30)
            ray.kill(worker)
        stop_group(proc, STOP_GRACE_S)


def _wait_ready(master, ui: str, workers: list, timeout_s: float) -> None:
    """Wait until the master answers and every worker has registered, or fail naming what is missing."""
    deadline, registered = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f"spark.master=ray: the Spark master exited ({master.returncode}); is Java installed?")
        ready, _ = ray.wait([w.alive.remote() for w in workers], num_returns=len(workers), timeout=1)
        try:
            alive = ray.get(ready)
        except ray.exceptions.RayActorError as err:  # its Ray node lost while the cluster starts
            raise RuntimeError(f"spark.master=ray: a Spark worker's Ray node was lost while starting "
                               f"({str(err).strip().splitlines()[-1].strip()}): run the job again") from err
        if len(ready) == len(workers) and not all(alive):
            tail = next(ray.get(w.log_tail.remote()) for w, ok in zip(workers, alive, strict=True) if not ok)
            raise RuntimeError(f"spark.master=ray: a Spark worker exited: {tail.strip().splitlines()[-1:]}")
        with contextlib.suppress(OSError, ValueError):  # a master still starting may answer no JSON
            registered = _alive_workers(ui)
            if registered == len(workers):
                return
        time.sleep(0.5)
    placed = len(ray.wait([w.alive.remote() for w in workers], num_returns=len(workers), timeout=0)[0])
    raise RuntimeError(f"spark.master=ray: {max(registered, 0)} of {len(workers)} Spark workers registered after "
                       f"{timeout_s:.0f} s ({placed} placed on their node; a node's CPUs may be taken)")
