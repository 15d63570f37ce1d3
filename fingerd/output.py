"""What may reach the wire: pure logic, no I/O.

RFC 1288 section 3.3 asks clients to filter control characters; a careful
server does it first, so a status or a forwarded answer can neither drive the
reader's terminal nor forge lines. Every line sent ends in CRLF (RFC 1288 2.2),
whatever line endings the data had.
"""

import re

# Cc (C0, DEL, C1) except TAB, and the bidirectional overrides and isolates
# that can make a line display as something other than what it holds.
_REMOVED = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0),
     *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")


def sanitize(text):
    """``text`` without any character a terminal could act on, TAB excepted."""
    return text.translate(_REMOVED)


def wire_lines(lines):
    """The wire bytes of ``lines`` (strings without line endings), each ended by CRLF."""
    return "".join(sanitize(line) + "\r\n" for line in lines).encode("utf-8")


def wire_text(text):
    """The wire bytes of free text with any line endings, re-ended in CRLF."""
    lines = _LINE_BREAK_RE.split(text)
    if lines[-1] == "":
        lines.pop()
    return wire_lines(lines)
