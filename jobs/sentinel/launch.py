"""Hold a sentinel-claimed run's lease while its job runs, then record how it ended.

Run wherever the sentinel starts a run (in the tick, as a Ray job, in a RayJob; as a command:
``python -m jobs.sentinel.holder``). It takes the lease from ``queued`` to ``running`` (only for its
own attempt), runs ``python -m <module> ...`` in a
child process with the lease and attempt in its environment (the ledger's fencing), renews the lease
every ``heartbeat`` seconds, stops the child when the lease is lost or ``timeout`` passes, and writes
``done`` (with the job's JSON summary) or ``failed`` (with its error line), releasing the lease.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from jobs.common.processes import stop_group
from operators.io import lease
from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV, StaleAttempt
from operators.io.storage import Storage

log = logging.getLogger("cc_refinery.sentinel")
STOP_GRACE_S = 20  # after SIGTERM, before SIGKILL


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def holder_args(uri: str, attempt: int, storage: Storage, ttl_s: float, heartbeat_s: float,
                timeout_s: float) -> list[str]:
    """This module's arguments (before ``--``) for a run of ``attempt`` under lease ``uri``."""
    settings = {k: v for k, v in storage.__getstate__().items() if v is not None}
    return ["--lease", uri, "--attempt", str(attempt), "--storage", json.dumps(settings), "--ttl-s", f"{ttl_s:g}",
            "--heartbeat-s", f"{heartbeat_s:g}", "--timeout-s", f"{timeout_s:g}"]


def _take(storage: Storage, uri: str, attempt: int, ttl_s: float) -> tuple[dict, str]:
    current = lease.read(storage, uri)
    if current is None or current[0]["attempt"] != attempt or current[0]["status"] != "queued":
        found = "nothing" if current is None else f"attempt {current[0]['attempt']} {current[0]['status']}"
        raise StaleAttempt(f"{uri}: attempt {attempt} is not queued there ({found}); not started")
    owner = f"run-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    doc = {**current[0], "status": "running", "owner": owner, "expires_at": time.time() + ttl_s,
           "started_at": stamp(), "updated_at": stamp()}
    try:
        return doc, lease.replace(storage, uri, doc, current[1])
    except lease.Conflict:
        raise StaleAttempt(f"{uri}: attempt {attempt} was taken over before it started") from None


def _tail(stream, echo, keep: int = 50) -> tuple[threading.Thread, collections.deque]:
    """Read ``stream`` to its end on a thread, echoing each line to ``echo`` (if any); keep the last lines."""
    lines: collections.deque = collections.deque(maxlen=keep)

    def pump():
        for line in stream:
            lines.append(line.rstrip("\n"))
            if echo is not None:
                echo.write(line)
                echo.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread, lines


def _summary(stdout: collections.deque) -> dict | None:
    """The job's one-line JSON summary (``jobs/cli.job_main``): the last stdout line that is a JSON object."""
    for line in reversed(stdout):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _error(stderr: collections.deque, rc: int) -> str:
    lines = [line for line in stderr if line.strip()]
    reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return reasons[-1] if reasons else (lines[-1] if lines else f"exit status {rc}")


def hold(storage: Storage, uri: str, attempt: int, command: list[str], ttl_s: float, heartbeat_s: float,
         timeout_s: float) -> dict:
    """Run ``python -m <command>`` under the lease; return the registry entry as written at the end.

    Raises StaleAttempt when the attempt is not (or no longer) the lease's: nothing is recorded then.
    """
    doc, version = _take(storage, uri, attempt, ttl_s)
    env = {**os.environ, LEASE_ENV: uri, ATTEMPT_ENV: str(attempt)}
    child = subprocess.Popen([sys.executable, "-m", *command], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    readers = [_tail(child.stdout, None), _tail(child.stderr, sys.stderr)]
    deadline, problem = time.monotonic() + timeout_s, None
    try:
        while problem is None:
            try:
                child.wait(heartbeat_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                problem = f"stopped: still running after {timeout_s:g}s"
                break
            renewed = {**doc, "expires_at": time.time() + ttl_s, "updated_at": stamp()}
            try:
                doc, version = renewed, lease.replace(storage, uri, renewed, version)
            except lease.Conflict:
                raise StaleAttempt(f"{uri}: attempt {attempt} lost its lease; its job was stopped") from None
            except Exception as err:  # noqa: BLE001 - storage unreachable: go on until the lease runs out
                log.warning("lease %s not renewed: %s", uri, err)
                if time.time() > doc["expires_at"]:
                    problem = f"stopped: the lease expired, not renewed ({err})"
    finally:
        if child.poll() is None:
            stop_group(child, STOP_GRACE_S)  # its local Ray too
    rc = child.wait()
    for thread, _ in readers:
        thread.join(STOP_GRACE_S)
    (_, stdout), (_, stderr) = readers
    done = rc == 0 and problem is None
    final = {**doc, "status": "done" if done else "failed", "expires_at": 0, "finished_at": stamp(),
             "updated_at": stamp(), "exit_status": rc}
    final.update({"result": _summary(stdout)} if done else {"error": problem or _error(stderr, rc)})
    try:
        lease.replace(storage, uri, final, version)
    except lease.Conflict:
        raise StaleAttempt(f"{uri}: attempt {attempt} lost its lease before it could record its end") from None
    return final
