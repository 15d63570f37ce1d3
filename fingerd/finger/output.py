"""What may reach the wire: pure logic, no I/O.

RFC 1288 section 3.3 asks clients to filter control characters; a careful
server does it first, so a status, a plan file or a forwarded answer can
neither drive the reader's terminal nor forge lines. Every line sent ends in
CRLF (RFC 1288 2.2), whatever line endings the data had. An operator may add
replacements (the tutorial's "whitewash") and choose what happens to
characters beyond ASCII.
"""

import re

# Cc (C0, DEL, C1) except TAB; the bidirectional overrides, isolates and marks
# (LRM, RLM, ALM) that can make a line display as something other than what it
# holds; the line and paragraph separators, which some terminals and viewers
# break lines at; and the byte order mark, invisible anywhere but at the start.
_REMOVED = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0),
     0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
     *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
)

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")

#: What ``high_bytes`` may be: keep UTF-8, drop non-ASCII, or show it as ``cat -v`` does.
HIGH_BYTES_POLICIES = ("pass", "strip", "caret")


def sanitize(text):
    """``text`` without any character a terminal could act on, TAB excepted."""
    return text.translate(_REMOVED)


def split_lines(text):
    """The lines of free text with any line endings; no empty last line for a final break."""
    lines = _LINE_BREAK_RE.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def caret(text):
    """Non-ASCII characters as ``cat -v`` shows their UTF-8 bytes: ``é`` becomes ``M-CM-)``."""
    def meta(match):
        out = []
        for byte in match.group().encode("utf-8"):
            low = byte & 0x7F
            out.append("M-" + ("^?" if low == 0x7F else "^" + chr(low + 64) if low < 32
                               else chr(low)))
        return "".join(out)
    return _NON_ASCII_RE.sub(meta, text)


class Renderer:
    """Turns answer lines into wire bytes under the operator's output rules.

    ``replacements`` are ``(old, new)`` pairs applied in order to every line;
    control characters are removed after them, so no replacement can
    introduce one.
    """

    def __init__(self, replacements=(), high_bytes="pass"):
        self.replacements = tuple(replacements)
        self._high = {"pass": None, "strip": lambda t: _NON_ASCII_RE.sub("", t),
                      "caret": caret}[high_bytes]

    def line(self, text):
        for old, new in self.replacements:
            text = text.replace(old, new)
        text = sanitize(text)
        return self._high(text) if self._high else text

    def render(self, lines):
        """The wire bytes of ``lines`` (strings without line endings), each ended by CRLF."""
        return "".join(self.line(text) + "\r\n" for text in lines).encode("utf-8")
