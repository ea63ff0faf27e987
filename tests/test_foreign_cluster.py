"""A machine with another Ray cluster on it (``ray start --head``, as ``make cluster-up`` leaves one): a local job
and the tests start a Ray of their own and never join it; only ``ray.address`` / ``RAY_ADDRESS`` would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_first_run import make
from tests.test_submit import RAY, _free_port
from tests.waiting import GENEROUS_S, wait_until

ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # where ray.init() with no address looks for a running head


@pytest.fixture
def foreign_head(tmp_path):
    """``ray start --head`` with Ray's default temp folder, so that ``ray.init()`` with no address would find it."""
    port = _free_port()
    agents = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "runtime-env-agent-port", "metrics-export-port")]
    env = {**os.environ, "PATH": f"{Path(RAY).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", *agents], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "head.log", "wb"), start_new_session=True)
    try:
        address = wait_until(lambda: ADDRESS_FILE.exists() and ADDRESS_FILE.read_text().endswith(f":{port}")
                             and ADDRESS_FILE.read_text(), "the foreign head's address file",
                             alive=lambda: head.poll() is None)
        yield address
        assert head.poll() is None, "the foreign head died while the tests ran"
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=GENEROUS_S)
        if ADDRESS_FILE.exists() and ADDRESS_FILE.read_text().endswith(f":{port}"):
            ADDRESS_FILE.unlink()


def jobs_on(address: str) -> int:
    """How many drivers ever ran on the cluster at ``address``, this probe's own left out."""
    probe = (f"import ray\nfrom ray._private.state import jobs\nray.init(address={address!r}, log_to_driver=False)\n"
             "me = ray.get_runtime_context().get_job_id()\nprint(sum(j['JobID'] != me for j in jobs()))\n")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "RAY_AUTH_MODE": "token"},
                          capture_output=True, text=True, timeout=GENEROUS_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_make_run_and_a_ray_test_start_their_own_ray_beside_a_running_head(tmp_path, foreign_head):
    run = make("run", f"OUTPUT={tmp_path / 'out'}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "fineweb" / "filter" / "_stats.json").exists()
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_curate_job.py::test_job_reads_and_writes_s3"], cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
                          capture_output=True, text=True, timeout=GENEROUS_S)
    assert test.returncode == 0, test.stdout[-3000:]
    assert jobs_on(foreign_head) == 0
