"""Run page extraction in a child process that is killed when one page overruns its time limit.

A signal cannot interrupt native code, and resiliparse's main-content pass is quadratic in a
page's nesting depth (100k nested ``<div>`` take minutes), so the limit is enforced from
outside: the child extracts pages one at a time and reports each; when it is silent past the
limit it is killed, that page is counted ``timeout``, and a fresh child takes the rest of the
batch; a page that finished but took longer than the limit counts as ``timeout`` too, so the
rule does not depend on timing. The child's address space is capped (``memory_mb``), so a page
that needs more fails to allocate instead of exhausting the worker's memory. A child that dies on a
page (a native crash, an allocation refused) costs that page (``error``), nothing more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection

START_S = 120.0  # a new child has this long to import its engine and say it is ready
# pages are sent in windows of this much HTML, so the child's memory does not follow the batch (or, through
# the largest batch met, the shard)
SEND_BYTES = 4 << 20
# a plain ``python -c`` child, not multiprocessing's spawn: spawn re-imports the parent's main module
# (in a Ray worker, all of Ray), which triples the child's start-up
CHILD = "import sys; from operators.extract.sandbox import serve; serve(*sys.argv[1:])"


def serve(read_fd: str, write_fd: str, engine: str, main_content: str, memory_mb: str) -> None:
    """The child: extract the pages it is sent one at a time, reporting each."""
    import resource

    inbox, outbox = Connection(int(read_fd), writable=False), Connection(int(write_fd), readable=False)
    from operators.extract.pages import extract_page

    limit = int(memory_mb) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    outbox.send("ready")
    while True:
        try:
            jobs = inbox.recv()
        except EOFError:
            return
        for i, html, ctype in jobs:
            started = time.perf_counter()
            text, rule = extract_page(html, ctype, engine, main_content == "1")
            outbox.send((i, text, rule, time.perf_counter() - started))


class Sandbox:
    """``run(pages)`` -> ``[(text, rule)]`` with a hard wall-clock and memory limit per page."""

    def __init__(self, engine: str, main_content: bool, timeout_s: float, memory_mb: int = 2048):
        self.args = (engine, "1" if main_content else "0", str(memory_mb))
        self.timeout_s = timeout_s
        self.proc = self.inbox = self.outbox = None
        self.ready = False
        self.restarts = 0

    def start(self) -> None:
        """Start the child without waiting for it: its imports overlap the caller's own start-up."""
        child_in, outbox = os.pipe()
        inbox, child_out = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(child_in), str(child_out), *self.args],
                                     pass_fds=(child_in, child_out), env=env, stdin=subprocess.DEVNULL)
        os.close(child_in)
        os.close(child_out)
        self.inbox, self.outbox = Connection(inbox, writable=False), Connection(outbox, readable=False)
        self.ready = False

    def _wait_ready(self) -> None:
        if not self.inbox.poll(START_S) or self.inbox.recv() != "ready":
            self.close()
            raise RuntimeError(f"the extraction process did not start within {START_S:.0f} s")
        self.ready = True

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.inbox.close()
            self.outbox.close()
        self.proc = self.inbox = self.outbox = None

    def run(self, pages: list[tuple[bytes, str | None]]) -> list[tuple[str | None, str | None]]:
        results: list[tuple[str | None, str | None]] = [(None, None)] * len(pages)
        pending = list(range(len(pages)))
        while pending:
            if self.proc is None:
                self.start()
            if not self.ready:
                self._wait_ready()
            window = _window(pages, pending)
            self.outbox.send([(i, *pages[i]) for i in window])
            for _ in window:
                try:
                    if not self.inbox.poll(self.timeout_s):  # the child is stuck on pages[pending[0]]
                        results[pending.pop(0)] = (None, "timeout")
                        break
                    i, text, rule, seconds = self.inbox.recv()
                except (EOFError, OSError):  # the child died on pages[pending[0]]
                    results[pending.pop(0)] = (None, "error")
                    break
                results[i] = (None, "timeout") if seconds > self.timeout_s else (text, rule)
                pending.remove(i)
            else:
                continue
            self.close()
            self.restarts += 1
        return results


def _window(pages: list[tuple[bytes, str | None]], pending: list[int]) -> list[int]:
    """The next pending pages up to SEND_BYTES of HTML (at least one): the child holds no more than that."""
    window, size = [], 0
    for i in pending:
        size += len(pages[i][0])
        if window and size > SEND_BYTES:
            break
        window.append(i)
    return window
