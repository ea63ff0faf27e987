"""Frame WARC records in a stream of decompressed bytes, checking each one's length.

A record is ``WARC/1.x`` headers, a blank line, ``Content-Length`` bytes of content and a
closing CRLF CRLF. A record whose closing bytes are not where its length says (a lying
``Content-Length``, a flipped byte, junk) is reported and skipped by resynchronising on the
next line that starts ``WARC/1.``; a record cut off by the end of its segment is reported,
never emitted. Written by hand because fastwarc and warcio trust the length and stop (or emit
a cut record) at the first inconsistency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAGIC = b"WARC/1."
END = b"\r\n\r\n"
MAX_HEADER = 1 << 16
LENGTH_RE = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE)


@dataclass(frozen=True)
class Frame:
    """One record: ``position`` in its segment, header block, content (cut to the keep limit), declared length."""

    position: int
    header: bytes
    content: bytes
    length: int


@dataclass(frozen=True)
class Problem:
    """A record that could not be read: where its segment put it, why (``corrupt_record``, ``truncated``)."""

    position: int
    reason: str
    detail: str


class Framer:
    """Feed the bytes of one segment (a gzip member, or a whole uncompressed file); get frames and problems.

    Content beyond ``keep`` bytes is counted but not held, so a huge record costs no memory.
    """

    def __init__(self, keep: int):
        self.keep = keep
        self.buf = bytearray()
        self.base = 0  # segment position of buf[0]
        self.header: bytes | None = None  # set while reading a record's content
        self.start = 0  # segment position of the current record
        self.skipped = 0  # content bytes past `keep` already discarded
        self.content = b""
        self.syncing = False

    def feed(self, data: bytes) -> list[Frame | Problem]:
        self.buf += data
        out: list[Frame | Problem] = []
        while self._step(out):
            pass
        return out

    def finish(self, cut: bool) -> list[Problem]:
        """End of segment; ``cut``: it ended early (end of file inside it)."""
        if self.header is None and (self.syncing or not self.buf.strip(b"\r\n")):
            return []
        where = self.start if self.header is not None else self.base
        if cut:
            return [Problem(where, "truncated", "the input ends inside this record")]
        return [Problem(where, "corrupt_record", "the record runs past the end of its gzip member")]

    def _drop(self, n: int) -> None:
        del self.buf[:n]
        self.base += n

    def _corrupt(self, out: list, detail: str) -> bool:
        """Report the current record and resynchronise after its first byte."""
        out.append(Problem(self.start, "corrupt_record", detail))
        if self.header is not None and self.skipped == 0:
            self._drop(max(0, self.start + 1 - self.base))  # search again from inside the bad record
        self.header, self.skipped, self.content, self.syncing = None, 0, b"", True
        return True

    def _step(self, out: list) -> bool:
        """Make one unit of progress; False when more bytes are needed."""
        if self.syncing:
            at = self.buf.find(b"\n" + MAGIC)
            if at < 0:
                self._drop(max(0, len(self.buf) - len(MAGIC)))
                return False
            self._drop(at + 1)
            self.syncing = False
        if self.header is None:
            return self._read_header(out)
        return self._read_content(out)

    def _read_header(self, out: list) -> bool:
        lead = 0
        while lead < len(self.buf) and self.buf[lead] in b"\r\n":
            lead += 1
        self._drop(lead)
        self.start = self.base
        if len(self.buf) < len(MAGIC):
            return False
        if not self.buf.startswith(MAGIC):
            return self._corrupt(out, f"no WARC header here (found {bytes(self.buf[:16])!r})")
        end = self.buf.find(END, 0, MAX_HEADER)
        if end < 0:
            if len(self.buf) >= MAX_HEADER:
                return self._corrupt(out, "WARC header block longer than 64 KiB")
            return False
        header = bytes(self.buf[: end + 4])
        match = LENGTH_RE.search(header, 0, end + 2)
        if not match:
            return self._corrupt(out, "WARC header without Content-Length")
        self.header, self.length = header, int(match.group(1))
        self.content = b""
        self._drop(len(header))
        self.start = self.base - len(header)
        return True

    def _read_content(self, out: list) -> bool:
        length = self.length
        if length <= self.keep:
            if len(self.buf) < length + 4:
                return False
            if self.buf[length:length + 4] != END:
                return self._corrupt(out, f"Content-Length {length} does not end at a record boundary")
            out.append(Frame(self.start, self.header, bytes(self.buf[:length]), length))
            self._drop(length + 4)
            self.header = None
            return True
        if not self.content:
            if len(self.buf) < self.keep:
                return False
            self.content = bytes(self.buf[: self.keep])
            self._drop(self.keep)
            self.skipped = self.keep
        take = min(len(self.buf), length - self.skipped)
        self._drop(take)
        self.skipped += take
        if self.skipped < length or len(self.buf) < 4:
            return False
        if self.buf[:4] != END:
            return self._corrupt(out, f"Content-Length {length} does not end at a record boundary")
        out.append(Frame(self.start, self.header, self.content, length))
        self._drop(4)
        self.header, self.skipped, self.content = None, 0, b""
        return True
