"""Waiting in tests on an event, not on the clock: a busy machine makes a correct product slow, never wrong.

Bounds here are only there so that a broken product ends the test with a clear message instead of hanging;
they are far above what a loaded 2-core machine needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GENEROUS_S = 1200.0


def wait_until(seen: Callable[[], object], what: str, bound_s: float = GENEROUS_S, every_s: float = 0.05,
               alive: Callable[[], bool] = lambda: True) -> object:
    """Poll ``seen()`` until it is truthy and return it; fail naming ``what`` when ``alive()`` turns false
    first (the process being watched ended) or after ``bound_s``."""
    deadline = time.monotonic() + bound_s
    while not (value := seen()):
        assert alive(), f"{what}: the process ended first"
        assert time.monotonic() < deadline, f"{what}: not seen in {bound_s:g} s"
        time.sleep(every_s)
    return value
