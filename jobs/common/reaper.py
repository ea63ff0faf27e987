"""A local Ray ends with the job's driver, even one killed by SIGKILL (which skips Ray's own exit hook).

Ray ties its GCS and raylet to the driver, but not what runs below them: a worker's own children (curation's
extraction sandbox) finish their batch first, tens of seconds. Every process the driver starts from
``adopt()`` on inherits a marker in its environment (``CC_REFINERY_JOB``); a small reaper process, in a
session of its own, waits for the driver to end and then kills every process that still carries the marker.
Hand-written because neither Ray nor the standard library offers a parent-death hook for grandchildren.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid

MARKER = "CC_REFINERY_JOB"
_reaper: subprocess.Popen | None = None


def adopt() -> None:
    """Mark this process's future children as the job's and start the reaper (once per process; Linux only:
    elsewhere Ray's own shutdown is all there is)."""
    global _reaper
    if _reaper is not None or not sys.platform.startswith("linux"):
        return
    os.environ[MARKER] = f"{os.getpid()}-{uuid.uuid4().hex}"
    _reaper = subprocess.Popen([sys.executable, "-c", f"from {__name__} import watch; watch()", str(os.getpid())],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)


def watch() -> None:
    """The reaper: wait for the driver (``argv[1]``) to end, then kill the processes carrying its marker."""
    driver, marker = int(sys.argv[1]), f"{MARKER}={os.environ[MARKER]}".encode()
    try:
        select.select([os.pidfd_open(driver)], [], [])  # readable once the driver has ended
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10.0  # a process may start while the others are killed: look again
    while (left := marked(marker)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(0.1)


def marked(marker: bytes) -> list[int]:
    """The processes (this one aside) whose environment holds ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found
