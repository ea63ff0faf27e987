"""Library notices dropped where they are logged: each says a fact of every run on such a machine, not a problem
of this run. Filters, not levels: a library may set its own logger's level when it is imported."""

from __future__ import annotations

import functools
import logging


@functools.cache
def drop(logger: str, starting: str = "", below: int = logging.CRITICAL + 1) -> None:
    """Drop ``logger``'s records under level ``below`` whose message starts with ``starting`` (once per call)."""
    logging.getLogger(logger).addFilter(
        lambda record: not (record.levelno < below and record.getMessage().startswith(starting)))
