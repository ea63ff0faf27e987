"""Run page extraction in a child process that is killed when one page overruns its time limit.

A signal cannot interrupt native code, and resiliparse's main-content pass is quadratic in a
page's nesting depth (100k nested ``<div>`` take minutes), so the limit is enforced from
outside: the child extracts pages one at a time and reports each; when it is silent past the
limit it is killed, that page is counted ``timeout``, and a fresh child takes the rest of the
batch; a page that finished but took longer than the limit counts as ``timeout`` too, so the
rule does not depend on timing. A child that dies on a page (a native crash) costs that page
(``error``), nothing more.
"""

from __future__ import annotations

import multiprocessing
import time

START_S = 120.0  # a new child has this long to import its engine and say it is ready


def _serve(conn, engine: str, main_content: bool) -> None:
    from operators.extract.html import extract_page

    conn.send("ready")
    while True:
        try:
            jobs = conn.recv()
        except EOFError:
            return
        for i, html, ctype in jobs:
            started = time.perf_counter()
            text, rule = extract_page(html, ctype, engine, main_content)
            conn.send((i, text, rule, time.perf_counter() - started))


class Sandbox:
    """``run(pages)`` -> ``[(text, rule)]`` with a hard wall-clock limit per page."""

    def __init__(self, engine: str, main_content: bool, timeout_s: float):
        self.args = (engine, main_content)
        self.timeout_s = timeout_s
        self.proc = self.conn = None
        self.restarts = 0

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_serve, args=(child, *self.args), daemon=True,
                                    name="cc-refinery-extract")
        self.proc.start()
        child.close()
        if not self.conn.poll(START_S) or self.conn.recv() != "ready":
            self.close()
            raise RuntimeError(f"the extraction process did not start within {START_S:.0f} s")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None

    def run(self, pages: list[tuple[bytes, str | None]]) -> list[tuple[str | None, str | None]]:
        results: list[tuple[str | None, str | None]] = [(None, None)] * len(pages)
        pending = list(range(len(pages)))
        while pending:
            if self.proc is None:
                self._start()
            self.conn.send([(i, *pages[i]) for i in pending])
            while pending:
                try:
                    if not self.conn.poll(self.timeout_s):  # the child is stuck on pages[pending[0]]
                        results[pending.pop(0)] = (None, "timeout")
                        break
                    i, text, rule, seconds = self.conn.recv()
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
