"""Stopping a child process started in its own session, with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(child: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the child's process group, wait up to ``grace_s``, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
