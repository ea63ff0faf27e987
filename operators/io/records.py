"""Split a WARC/WET file into records, gzip member by gzip member, surviving bad and cut ones.

Common Crawl compresses each record as its own gzip member (WARC 1.1, annex D). Each member is
decompressed and CRC-checked on its own; a member that fails is reported with its offset and
reading resumes at the next gzip header, so one flipped byte costs one record, not the rest of
the shard. Records inside a member are framed by :mod:`operators.io.frames`; records never span
members. An uncompressed WARC is framed as one segment. A file that yields no record at all is
not a WARC/WET file: :class:`NotAWarc`. Written by hand because no WARC library resynchronises.

A byte range ``[start, end)`` of a gzipped file reads the members that *start* in it: from the
first member at or after ``start`` (a gzip header whose data decompresses to ``WARC/1.``) up to
the first member at or after ``end``, so the ranges of one file read each member exactly once.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from operators.io.frames import MAGIC, Frame, Framer, Problem

GZIP_MAGIC = b"\x1f\x8b\x08"
CHUNK = 1 << 20
FEED = 1 << 14  # compressed bytes per decompress call: small, as the rest is copied to unused_data
HOLD = 1 << 26  # compressed bytes kept for resynchronising inside one (whole-file) gzip member
HELD_FRAMES = 4096  # frames of one member held back until its CRC checks (more: whole-file gzip)
GIVE_UP = 3  # problems before the first good record that make a file "not a WARC"


class NotAWarc(ValueError):
    """The input is not a WARC or WET file."""


class Window:
    """Bytes read ahead from a sequential stream, addressed by file offset."""

    def __init__(self, stream, start: int = 0):
        self.stream = stream
        self.buf = bytearray()
        self.start = start
        self.eof = False

    def _fill(self) -> None:
        data = self.stream.read(CHUNK)
        if data:
            self.buf += data
        else:
            self.eof = True

    def get(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
        while offset + n > self.start + len(self.buf) and not self.eof:
            self._fill()
        i = offset - self.start
        return bytes(self.buf[i:i + n])

    def release(self, offset: int) -> None:
        """Forget the bytes before ``offset``."""
        if offset > self.start:
            del self.buf[: offset - self.start]
            self.start = offset

    def find(self, needle: bytes, offset: int) -> int:
        """File offset of the next ``needle`` at or after ``offset``; -1 if none."""
        while True:
            at = self.buf.find(needle, max(0, offset - self.start))
            if at >= 0:
                return self.start + at
            if self.eof:
                return -1
            self.release(max(offset, self.start + len(self.buf) - len(needle) + 1))
            self._fill()


def _starts_record(window: Window, pos: int) -> bool:
    """Whether a gzip member that holds a WARC record starts at ``pos``."""
    try:
        head = zlib.decompressobj(31).decompress(window.get(pos, FEED), len(MAGIC))
    except zlib.error:
        return False
    return head == MAGIC


def _first_member(window: Window, pos: int) -> int:
    """Offset of the first member at or after ``pos`` that holds a WARC record; -1 if none."""
    while (pos := window.find(GZIP_MAGIC, pos)) >= 0 and not _starts_record(window, pos):
        pos += 1
    return pos


def _members(window: Window, keep: int, start: int, end: int | None) -> Iterator[tuple[int, int, Frame | Problem]]:
    pos, searching = start, False  # searching: skipping a bad region, not yet at a good member
    if start and (pos := _first_member(window, start)) < 0:
        return
    while window.get(pos, 1) and (end is None or pos < end):
        if window.get(pos, 3) != GZIP_MAGIC:
            if not searching:
                yield pos, 0, Problem(pos, "corrupt_record", "no gzip member starts here")
            searching, pos = True, window.find(GZIP_MAGIC, pos + 1)
            if pos < 0:
                return
            continue
        start = pos
        window.release(start)
        decoder, framer, held = zlib.decompressobj(31), Framer(keep), []
        error, cut = None, False
        while not decoder.eof:
            chunk = window.get(pos, FEED)
            if not chunk:
                cut = True
                break
            try:
                data = decoder.decompress(chunk)
            except zlib.error as err:
                error = err
                break
            pos += len(chunk) - len(decoder.unused_data)
            held += framer.feed(data)
            if len(held) > HELD_FRAMES:
                yield from ((start, i, item) for i, item in enumerate(held))
                held = []
            if pos - window.start > HOLD:
                window.release(pos)
        if error is not None:
            if not searching:
                yield start, 0, Problem(start, "corrupt_record", f"gzip member does not decompress: {error}")
            searching, pos = True, window.find(GZIP_MAGIC, max(start + 1, window.start))
            if pos < 0:
                return
            continue
        searching = False
        held += framer.finish(cut)
        yield from ((start, i, item) for i, item in enumerate(held))
        if cut:
            return


def _plain(window: Window, keep: int) -> Iterator[tuple[int, int, Frame | Problem]]:
    framer, pos = Framer(keep), 0
    while chunk := window.get(pos, CHUNK):
        pos += len(chunk)
        window.release(pos)
        yield from ((item.position, 0, item) for item in framer.feed(chunk))
    yield from ((item.position, 0, item) for item in framer.finish(cut=True))


def read_records(stream, name: str, keep: int, start: int = 0,
                 end: int | None = None) -> Iterator[tuple[int, int, Frame | Problem]]:
    """Yield ``(offset, index, frame or problem)``: the file offset of the record's gzip member (or of
    the record, uncompressed), its index in that member, and what was read there. ``stream`` begins at
    byte ``start``; a range (``start`` > 0 or ``end``) is read only from a gzipped file."""
    window = Window(stream, start)
    head = window.get(start, len(MAGIC))
    if start or end is not None:
        items = _members(window, keep, start, end)
    elif head.startswith(GZIP_MAGIC[:2]):
        items = _members(window, keep, 0, None)
    elif head == MAGIC:
        items = _plain(window, keep)
    else:
        raise NotAWarc(f"{name}: not a WARC/WET file ({f'it starts with {head!r}' if head else 'it is empty'})")
    frames = problems = 0
    for item in items:
        if isinstance(item[2], Frame):
            frames += 1
        else:
            problems += 1
            if not frames and problems >= GIVE_UP:
                raise NotAWarc(f"{name}: not a WARC/WET file (no readable record, {problems} unreadable)")
        yield item
    if not frames and problems:
        raise NotAWarc(f"{name}: not a WARC/WET file (no readable record)")
