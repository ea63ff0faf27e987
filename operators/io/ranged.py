"""A sequential reader that survives dropped connections: it re-opens at the last good offset.

A connection reset or timeout in the middle of a 1 GB shard is retried with backoff by a new
range request from the byte after the last one received; a read that ends before the object's
known size counts as such a failure. If the object changed since the read began (its ETag or
size), or the failures persist, :class:`ReadFailed` is raised and the shard fails: it is never
marked done on a partial read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

import botocore.exceptions
import requests
import urllib3.exceptions

TRANSIENT = (OSError, botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError,
             requests.RequestException)


class ReadFailed(IOError):
    """A shard's input could not be read to the end."""


class InputChanged(ReadFailed):
    """The object was replaced while it was being read."""


PERMANENT = (InputChanged, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class RangeReader:
    """``read(n)`` over ``open_at(offset)`` streams, re-opened at the current offset after a failure."""

    def __init__(self, name: str, open_at: Callable[[int], IO[bytes]], size: int | None,
                 retries: int = 5, backoff_s: float = 1.0, start: int = 0):
        self.name, self.open_at, self.size = name, open_at, size
        self.retries, self.backoff_s = retries, backoff_s
        self.offset = start
        self.failures = 0  # transient failures recovered from (or not), for the shard's counts
        self.stream: IO[bytes] | None = None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` only at the end of the object."""
        attempt = 0
        while True:
            try:
                if self.stream is None:
                    self.stream = self.open_at(self.offset)
                data = self.stream.read(size)
                if not data and self.size is not None and self.offset < self.size:
                    raise ConnectionError(f"stream ended at byte {self.offset} of {self.size}")
                self.offset += len(data)
                return data
            except PERMANENT:
                raise
            except TRANSIENT as err:
                self.close()
                self.failures += 1
                attempt += 1
                if attempt > self.retries:
                    raise ReadFailed(f"{self.name}: read failed at byte {self.offset} after {self.retries} "
                                     f"retries: {type(err).__name__}: {err}") from err
                time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except TRANSIENT:
                pass
            self.stream = None
