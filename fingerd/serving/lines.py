"""Framing of request lines: pure logic, no I/O.

A request is a fixed number of lines (one for finger, two for the setter),
each ended by LF with an optional CR before it. Lines are taken from a
buffer as bytes arrive; the caller never needs to hold more than
``count * (limit + 2)`` bytes plus one read.
"""

from __future__ import annotations


class LineTooLong(ValueError):
    """A line grew past its limit before it ended."""


def take_lines(buf: bytes, count: int, limit: int, eof: bool) -> list[bytes] | None:
    """The first ``count`` lines of ``buf`` without their endings, or None for "need more".

    With ``eof`` the input is complete: the lines found are returned even if
    fewer than ``count``, a final unended line counting as ended there (so an
    empty list means the client sent nothing). Raises LineTooLong when a line
    holds more than ``limit`` bytes.
    """
    lines: list[bytes] = []
    start = 0
    while len(lines) < count:
        end = buf.find(b"\n", start)
        if end < 0:
            rest = buf[start:]
            if len(rest) > limit + 1 or (len(rest) > limit and not rest.endswith(b"\r")):
                raise LineTooLong
            if not eof:
                return None
            if rest:
                lines.append(rest.removesuffix(b"\r"))
            return lines
        line = buf[start:end].removesuffix(b"\r")
        if len(line) > limit:
            raise LineTooLong
        lines.append(line)
        start = end + 1
    return lines
