"""One run at a time per output: a lock document beside the ledger, refreshed while the run lives.

The lock is created only if none exists (a conditional put on S3, a hard link on disk; see
:mod:`operators.io.lease`), names its holder (host, pid, start time) and carries a heartbeat. A
second run on the same output is refused with the holder's name. A lock whose holder is gone is
taken over: at once when the holder ran on this host and its process has ended (a killed run
restarted), else once its heartbeat is older than ``ttl_s``; and by a newer attempt of the same
sentinel lease (its fencing, :mod:`operators.io.ledger`, already refuses the older one's commits).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from operators.io import lease
from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV
from operators.io.storage import Storage, join

log = logging.getLogger("cc_refinery.lock")


class Locked(RuntimeError):
    """Another live run holds the output."""


def _gone(holder: dict, mine: dict, now: float) -> bool:
    if mine["lease"] and holder.get("lease") == mine["lease"] and int(holder.get("attempt") or 0) < mine["attempt"]:
        return True
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            pass
    return now - float(holder.get("heartbeat", 0)) > float(holder.get("ttl_s", 0))


class RunLock:
    """``with RunLock(storage, output):`` holds ``<output>/_lock.json`` for this process, or raises :class:`Locked`."""

    def __init__(self, storage: Storage, output: str, ttl_s: float = 120.0):
        self.storage, self.uri, self.what, self.ttl_s = storage, join(output, "_lock.json"), f"output {output}", ttl_s
        self.doc = {"host": socket.gethostname(), "pid": os.getpid(), "ttl_s": ttl_s,
                    "started": datetime.now(UTC).isoformat(timespec="seconds"),
                    "lease": os.environ.get(LEASE_ENV), "attempt": int(os.environ.get(ATTEMPT_ENV) or 0)}
        self.version: str | None = None
        self.stop = threading.Event()
        self.beat: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.version = self._take()
        self.beat = threading.Thread(target=self._heartbeat, name="run-lock", daemon=True)
        self.beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.beat.join()
        current = lease.read(self.storage, self.uri)
        if current is not None and current[1] == self.version:
            self.storage.delete(self.uri)

    def _take(self) -> str:
        doc = {**self.doc, "heartbeat": time.time()}
        try:
            return lease.create(self.storage, self.uri, doc)
        except lease.Conflict:
            pass
        current = lease.read(self.storage, self.uri)
        if current is None:  # released meanwhile
            return self._take()
        holder, version = current
        if not _gone(holder, self.doc, time.time()):
            age = time.time() - float(holder.get("heartbeat", 0))
            raise Locked(f"{self.what} is being written by another run: pid {holder.get('pid')} on "
                         f"{holder.get('host')}, started {holder.get('started')}, alive {age:.0f} s ago "
                         f"({self.uri}); wait for it to end, or stop it")
        log.warning("taking over %s from a run that is gone (pid %s on %s)", self.uri, holder.get("pid"),
                    holder.get("host"))
        try:
            return lease.replace(self.storage, self.uri, doc, version)
        except lease.Conflict:
            raise Locked(f"{self.what}: another run took over {self.uri} at the same moment") from None

    def _heartbeat(self) -> None:
        while not self.stop.wait(self.ttl_s / 4):
            try:
                self.version = lease.replace(self.storage, self.uri, {**self.doc, "heartbeat": time.time()},
                                             self.version)
            except lease.Conflict:
                log.error("%s was taken over by another run; this run's ledger entries may race with it", self.uri)
                return
            except Exception as err:  # noqa: BLE001 - a failed heartbeat is retried at the next beat
                log.warning("could not refresh %s: %s", self.uri, err)
