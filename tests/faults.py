"""Hostile inputs for tests: proxies that drop, refuse or hold S3 requests, and damaged WARC files."""

from __future__ import annotations

import gzip
import re
import select
import socket
import struct
import threading
import time
import zlib
from urllib.parse import parse_qs, unquote, urlsplit


def forward(client: socket.socket, upstream: socket.socket, cut=lambda size: False, dropped=lambda: False) -> None:
    """Forward both ways in one thread, so that closing the sockets resets them at once: reset when
    ``dropped()``, or when ``cut(n)`` says so of ``n`` bytes coming back."""
    try:
        while True:
            if dropped():
                return close_pair(client, upstream, reset=True)
            for src in select.select([client, upstream], [], [], 0.05)[0]:
                data = src.recv(65536)
                if not data:
                    return close_pair(client, upstream, reset=False)
                if src is upstream and cut(len(data)):
                    return close_pair(client, upstream, reset=True)
                (upstream if src is client else client).sendall(data)
    except OSError:
        close_pair(client, upstream, reset=False)


def close_pair(client: socket.socket, upstream: socket.socket, reset: bool) -> None:
    for s in (client, upstream):
        close(s, reset)


def close(s: socket.socket, reset: bool) -> None:
    if reset:  # a real TCP RST
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class Proxy:
    """A local server on 127.0.0.1 that hands each accepted connection to ``_serve`` in a thread."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.close()


class DroppingProxy(Proxy):
    """A TCP proxy to ``upstream`` that resets a connection when the bytes sent back reach ``cut_at``.

    ``cut_at`` counts over all connections; the connection carrying that byte is reset (a real
    TCP RST, SO_LINGER 0, as a flaky network or a restarting server gives). With ``down_after``
    every later connection is reset at its first byte: an outage that does not end.
    ``drop_all()`` resets the open connections at a moment of the test's choosing.
    """

    def __init__(self, upstream: str, cut_at: int, down_after: bool = False):
        self.cut_at, self.down_after = cut_at, down_after
        self.sent = self.cuts = 0
        self.opened = self.drop_below = 0  # connections opened; those numbered below drop_below are reset
        super().__init__(upstream)

    def _serve(self, client: socket.socket) -> None:
        with self.lock:
            number, self.opened = self.opened, self.opened + 1
        forward(client, socket.create_connection(self.upstream), self._cut, lambda: number < self.drop_below)

    def _cut(self, size: int) -> bool:
        """Count ``size`` bytes going back; whether the connection is to be reset instead."""
        with self.lock:
            self.sent += size
            cut = (self.cuts == 0 and self.sent >= self.cut_at) or (self.cuts > 0 and self.down_after)
            self.cuts += cut
            return cut

    def drop_all(self) -> None:
        """Reset every connection open now (at its next forwarded chunk)."""
        self.drop_below = self.opened



def members(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each gzip member of a per-record gzipped WARC."""
    spans, pos = [], 0
    while pos < len(data):
        decoder = zlib.decompressobj(31)
        decoder.decompress(data[pos:])
        end = len(data) - len(decoder.unused_data)
        spans.append((pos, end))
        pos = end
    return spans


def rewrite_member(data: bytes, span: tuple[int, int], change) -> bytes:
    """``data`` with the record in gzip member ``span`` replaced by ``change(record)``, recompressed."""
    start, end = span
    return data[:start] + gzip.compress(change(gzip.decompress(data[start:end]))) + data[end:]


def shift_length(record: bytes, delta: int) -> bytes:
    """The record with its WARC Content-Length off by ``delta`` (a lying header)."""
    return re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m.group(1)) + delta), record,
                  count=1)


class FaultyHttpProxy(Proxy):
    """An HTTP proxy to an S3 server that answers some requests itself: ``503 SlowDown`` to every
    ``slow_down_every``-th of the first ``faults`` requests, ``404 NoSuchKey`` for keys ending in
    ``missing``, a connection reset (TCP RST, unanswered) to every ``reset_every``-th of those ``faults``
    requests, and a ``delay_s`` pause before each forwarded one. Each request gets its own connection
    (``Connection: close`` is forced), so every request is seen.

    ``hold(pattern)`` arms a trap: the next request whose ``METHOD /bucket/key`` matches the regex is
    never answered, and ``held`` is set, so a test can kill the client at exactly that point."""

    def __init__(self, upstream: str, faults: int = 0, slow_down_every: int = 2, missing: str | None = None,
                 delay_s: float = 0.0, reset_every: int = 0):
        self.faults, self.every, self.missing, self.delay_s = faults, slow_down_every, missing, delay_s
        self.reset_every = reset_every
        self.requests = self.slow_downs = self.not_found = self.resets = 0
        self.trap: re.Pattern | None = None
        self.held = threading.Event()
        self.holding: list[socket.socket] = []
        super().__init__(upstream)

    def hold(self, pattern: str | None) -> None:
        """Hold the next request matching ``pattern`` (None: disarm); let go of those held before."""
        with self.lock:
            self.trap, released, self.holding = re.compile(pattern) if pattern else None, self.holding, []
            self.held.clear()
        for client in released:
            client.close()

    def _seen(self, method: str, target: str) -> None:
        """Called with each request's method and target (path and query) as it arrives."""

    def _trapped(self, client: socket.socket, request: str) -> bool:
        with self.lock:
            if self.trap is None or not self.trap.search(request):
                return False
            self.trap = None
            self.holding.append(client)
            self.held.set()
            return True

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                client.close()
                return
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        method, target = head.split(b" ", 2)[:2]
        with self.lock:
            self.requests += 1
            number = self.requests
        path = target.split(b"?")[0].decode()
        self._seen(method.decode(), target.decode())
        if self._trapped(client, f"{method.decode()} {path}"):
            return
        if self.missing and path.endswith(self.missing):
            with self.lock:
                self.not_found += 1
            return self._answer(client, method, b"404 Not Found", b"NoSuchKey")
        if number <= self.faults and self.reset_every and number % self.reset_every == 0:
            with self.lock:
                self.resets += 1
            return close(client, reset=True)
        if number <= self.faults and number % self.every == 0:
            with self.lock:
                self.slow_downs += 1
            return self._answer(client, method, b"503 Slow Down", b"SlowDown")
        time.sleep(self.delay_s)
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        upstream = socket.create_connection(self.upstream)
        upstream.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + rest)
        forward(client, upstream)

    @staticmethod
    def _answer(client: socket.socket, method: bytes, status: bytes, code: bytes) -> None:
        body = b"" if method == b"HEAD" else b"<Error><Code>" + code + b"</Code><Message>injected</Message></Error>"
        client.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        client.close()


class CountingProxy(FaultyHttpProxy):
    """A proxy to an S3 server (path-style requests) that forwards every request and logs it by S3 price class:
    ``LIST`` (a GET of the bucket itself), ``GET``, ``HEAD``, ``PUT``, ``POST`` (multipart uploads), ``DELETE``,
    with the key it names (a LIST: ``<bucket>/<its prefix>``). ``counts(prefix)`` counts those whose key starts
    with ``prefix`` (``bucket/key...``); ``reset()`` empties the log."""

    def __init__(self, upstream: str):
        self.log: list[tuple[str, str]] = []  # (class, "bucket/key"), in arrival order
        super().__init__(upstream)

    def _seen(self, method: str, target: str) -> None:
        parts = urlsplit(target)
        path = unquote(parts.path).strip("/")
        if method == "GET" and "/" not in path:
            method, path = "LIST", f"{path}/{parse_qs(parts.query).get('prefix', [''])[0]}"
        with self.lock:
            self.log.append((method, path))

    def counts(self, prefix: str = "") -> dict[str, int]:
        with self.lock:
            log = list(self.log)
        found = dict.fromkeys(("GET", "PUT", "HEAD", "LIST", "POST", "DELETE"), 0)
        for kind, path in log:
            if path.startswith(prefix):
                found[kind] = found.get(kind, 0) + 1
        return found

    def reset(self) -> None:
        with self.lock:
            self.log = []
