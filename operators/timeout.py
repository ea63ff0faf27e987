"""A per-call wall-clock limit for pure-Python work (HTML extraction)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class TimeLimitExceeded(Exception):
    pass


def _raise(signum, frame):
    raise TimeLimitExceeded


@contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`TimeLimitExceeded` if the block runs longer than ``seconds``.

    Uses ``SIGALRM`` (main thread only; elsewhere the block runs unlimited). Native code is
    interrupted when it returns to Python, so callers also bound input size.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
