"""Hostile inputs for tests: a TCP proxy that drops connections, and damaged WARC files."""

from __future__ import annotations

import gzip
import re
import select
import socket
import struct
import threading
import zlib


class DroppingProxy:
    """A TCP proxy to ``upstream`` that resets a connection when the bytes sent back reach ``cut_at``.

    ``cut_at`` counts over all connections; the connection carrying that byte is reset (a real
    TCP RST, SO_LINGER 0, as a flaky network or a restarting server gives). With ``down_after``
    every later connection is reset at its first byte: an outage that does not end.
    ``drop_all()`` resets the open connections at a moment of the test's choosing.
    """

    def __init__(self, upstream: str, cut_at: int, down_after: bool = False):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.cut_at, self.down_after = cut_at, down_after
        self.sent = self.cuts = 0
        self.opened = self.drop_below = 0  # connections opened; those numbered below drop_below are reset
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
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, self.opened), daemon=True).start()
            self.opened += 1

    def _pump(self, client: socket.socket, upstream: socket.socket, number: int) -> None:
        """Forward both ways in one thread, so that closing the sockets resets them at once."""
        try:
            while True:
                if number < self.drop_below:
                    return self._close(client, upstream, reset=True)
                for src in select.select([client, upstream], [], [], 0.05)[0]:
                    data = src.recv(65536)
                    if not data:
                        return self._close(client, upstream, reset=False)
                    if src is upstream and self._cut(len(data)):
                        return self._close(client, upstream, reset=True)
                    (upstream if src is client else client).sendall(data)
        except OSError:
            self._close(client, upstream, reset=False)

    def _cut(self, size: int) -> bool:
        """Count ``size`` bytes going back; whether the connection is to be reset instead."""
        with self.lock:
            self.sent += size
            cut = (self.cuts == 0 and self.sent >= self.cut_at) or (self.cuts > 0 and self.down_after)
            self.cuts += cut
            return cut

    @staticmethod
    def _close(client: socket.socket, upstream: socket.socket, reset: bool) -> None:
        for s in (client, upstream):
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def drop_all(self) -> None:
        """Reset every connection open now (at its next forwarded chunk)."""
        self.drop_below = self.opened

    def close(self) -> None:
        self.server.close()


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
