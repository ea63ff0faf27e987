"""Several Ray nodes on this one machine, as a cluster has them: a head and worker nodes, each its own
``ray start --block`` (own raylet, own CPUs and ``--resources``, own process group), so that a test can kill one
node's raylet and its workers at once, as a spot preemption does. Jobs join with ``--set ray.address=<address>``.

    with ray_cluster(head_cpus=1, workers={"w1": 1, "w2": 1}) as cluster:
        run_job(..., f"ray.address={cluster.address}")
        cluster.kill("w1")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.test_submit import RAY, _free_port
from tests.waiting import GENEROUS_S, wait_until

START_TRIES = 5
STARTED = "Ray runtime started."  # what ``ray start`` prints once its node is registered
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}  # clients need the mode `ray start` defaults to


def _agents() -> list[str]:
    """Free ports for a node's agents: their fixed defaults would clash with another Ray on this machine."""
    return [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port")]


@dataclass
class RayCluster:
    """A running cluster: ``address`` (host:port of the head's GCS) and each node's ``ray start`` process by name
    (``head`` and the worker names); ``ids`` maps a Ray node id to its name."""

    address: str
    folder: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def nodes(self) -> list[dict]:
        """``ray.nodes()`` as a fresh client sees it: [{"name", "id", "alive", "cpus"}]."""
        probe = (f"import json, ray\nray.init(address={self.address!r}, log_to_driver=False)\n"
                 "print('NODES', json.dumps([{'name': n['NodeName'], 'id': n['NodeID'], 'alive': n['Alive'],"
                 " 'cpus': n['Resources'].get('CPU', 0)} for n in ray.nodes()]))\n")
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **ENV}, capture_output=True,
                              text=True, timeout=GENEROUS_S)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(next(line[6:] for line in done.stdout.splitlines() if line.startswith("NODES ")))

    def ids(self) -> dict[str, str]:
        """Ray node id -> node name, for every node the cluster ever had."""
        return {n["id"]: n["name"] for n in self.nodes()}

    def kill(self, name: str) -> None:
        """SIGKILL the node's raylet and every process it started (its workers), as a preempted machine goes."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=GENEROUS_S)


def ended(job: subprocess.Popen, bound_s: float = GENEROUS_S) -> subprocess.CompletedProcess:
    """A job's process run to its end, failing the test past ``bound_s`` (it hangs) with its last output."""
    try:
        out, err = job.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
        raise AssertionError(f"the job did not end within {bound_s:g} s:\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def _start(args: list[str], name: str, folder: str) -> subprocess.Popen:
    env = {**os.environ, **ENV, "PATH": f"{Path(RAY).parent}:{os.environ['PATH']}"}
    return subprocess.Popen([RAY, "start", "--block", f"--node-name={name}", "--node-ip-address=127.0.0.1",
                             *_agents(), *args], env=env, stdout=open(f"{folder}/{name}.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def ray_cluster(head_cpus: int, workers: dict[str, int], resources: dict[str, dict] | None = None,
                ) -> Iterator[RayCluster]:
    """A head with ``head_cpus`` CPUs and one worker node per ``workers`` name with its CPUs (and its custom
    ``resources[name]``, default ``{name: 1}`` so a task can be pinned to it); all stopped after, every process
    of theirs gone."""
    folder = tempfile.mkdtemp(prefix="mna-", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    cluster = RayCluster("", folder)
    resources = resources or {}

    def head() -> list[str]:
        port = _free_port()
        cluster.address = f"127.0.0.1:{port}"
        return ["--head", f"--port={port}", f"--num-cpus={head_cpus}", "--include-dashboard=false",
                f"--temp-dir={folder}/t", f"--object-manager-port={_free_port()}",
                f"--node-manager-port={_free_port()}"]

    def worker(name: str) -> list[str]:
        return [f"--address={cluster.address}", f"--num-cpus={workers[name]}",
                f"--resources={json.dumps(resources.get(name, {name: 1}))}",
                f"--object-manager-port={_free_port()}", f"--node-manager-port={_free_port()}"]

    try:
        _start_node(cluster, "head", head)
        for name in workers:
            _start_node(cluster, name, lambda name=name: worker(name))
        yield cluster
    finally:
        for process in cluster.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=GENEROUS_S)
        try:  # SIGKILLed, they take a moment to exit
            wait_until(lambda: not _left(folder), "the nodes' processes ending", bound_s=120, every_s=0.5)
        finally:
            left = _left(folder)
            shutil.rmtree(folder, ignore_errors=True)
        assert left == [], f"Ray processes outlived their nodes' process groups: {left}"


def _left(folder: str) -> list[str]:
    """Processes of the cluster in ``folder`` still running."""
    return subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True).stdout.split()


def _start_node(cluster: RayCluster, name: str, args: Callable[[], list[str]]) -> None:
    """Start node ``name`` until its ``ray start`` says it runs: Ray gives a node 30 s to register, which a machine
    that many tests share does not always meet (``ray start`` then ends)."""
    log = Path(cluster.folder) / f"{name}.log"
    for _ in range(START_TRIES):
        process = cluster.processes[name] = _start(args(), name, cluster.folder)
        wait_until(lambda p=process: p.poll() is not None or STARTED in log.read_text(errors="replace"),
                   f"node {name} starting", every_s=0.5)
        if process.poll() is None:
            return
        with contextlib.suppress(ProcessLookupError):  # what it started, which may still register later
            os.killpg(process.pid, signal.SIGKILL)
    _logs(cluster.folder)
    raise AssertionError(f"node {name} did not start in {START_TRIES} tries (its output is printed above)")


def _logs(folder: str) -> None:
    """Print each node's ``ray start`` output."""
    for log in sorted(Path(folder).glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
