"""What may reach the wire: pure logic, no I/O.

RFC 1288 section 3.3 asks clients to filter control characters; a careful
server does it first, so a status, a plan file or a forwarded answer can
neither drive the reader's terminal nor forge lines. Every line sent ends in
CRLF (RFC 1288 2.2), whatever line endings the data had. An operator may add
replacements (the tutorial's "whitewash") and choose what happens to
characters beyond ASCII.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache

from fingerd.limits import MAX_REPLACED_LINE_CHARS

#: Unicode categories never sent: the format characters (bidirectional
#: controls, zero-width spaces and joiners, the soft hyphen, tag characters,
#: the byte order mark), invisible yet able to make a line display as
#: something other than what it holds; and the line and paragraph
#: separators, which some terminals and viewers break lines at.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})

# Cc (C0, DEL, C1) except TAB: a fixed set, by Unicode's stability policy.
_CONTROLS = (*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))
#: The format characters Unicode assigned after the database of an older Python
#: (13.0 in Python 3.9 and 3.10, 14.0 in 3.11), which calls them unassigned: the
#: Arabic pound and piastre marks above (U+0890, U+0891; Unicode 14.0) and the
#: Egyptian hieroglyph format controls (U+13439 to U+1343F; 15.0). Unicode 16.0 to
#: 18.0 add none. Removed on every Python, so the output is the same on each.
LATER_INVISIBLE = (0x0890, 0x0891, *range(0x13439, 0x13440))
#: Lone surrogates: what Python makes of bytes that are not UTF-8 where it decodes
#: with ``surrogateescape``, as the account database's fields (a GECOS written in
#: Latin-1) are. No UTF-8 holds them, so each becomes U+FFFD, as a decode with
#: "replace" would have made it, instead of failing the encoding of the answer.
SURROGATES = range(0xD800, 0xE000)
REPLACEMENT = "\ufffd"


#: The code points of INVISIBLE_CATEGORIES in Unicode 13.0 to 15.1 (Python 3.9 to 3.13),
#: with LATER_INVISIBLE: the same on each, since none left those categories. Kept here,
#: first and last of each run, because finding them in the database passes over every
#: code point (0.14 to 0.35 s of each worker's start here, most of it). tests/test_output.py
#: checks them against the database of the Python that runs it.
INVISIBLE_RUNS = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
    (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
#: The newest Unicode database INVISIBLE_RUNS were checked against: a newer one, which
#: may have assigned more, is read whole instead.
CHECKED_UNICODE = (15, 1, 0)


def invisible_points(unicode_version: str = unicodedata.unidata_version) -> list[int]:
    """The code points of INVISIBLE_CATEGORIES and LATER_INVISIBLE in the Unicode
    database of ``unicode_version`` (this Python's): INVISIBLE_RUNS up to
    CHECKED_UNICODE, else those this Python's database holds."""
    if tuple(map(int, unicode_version.split("."))) <= CHECKED_UNICODE:
        return [point for first, last in INVISIBLE_RUNS for point in range(first, last + 1)]
    return [*scan_invisible(), *LATER_INVISIBLE]


def scan_invisible() -> list[int]:
    """The code points of INVISIBLE_CATEGORIES in this Python's Unicode database, found
    by a pass over every code point."""
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    return [point for point, category in enumerate(categories)
            if category in INVISIBLE_CATEGORIES]


@cache
def _removed() -> dict[int, str | None]:
    """The translate table deleting every control but TAB and every invisible point,
    and replacing SURROGATES.

    Built once a process, on first use, so that a command that only reads the
    configuration never builds it. Never mutated once built, so every thread may
    use it.
    """
    table: dict[int, str | None] = dict.fromkeys([*_CONTROLS, *invisible_points()])
    table.update(dict.fromkeys(SURROGATES, REPLACEMENT))
    return table


_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")


def sanitize(text: str) -> str:
    """``text`` without any character a terminal could act on or a reader not see, TAB
    excepted, and with nothing UTF-8 cannot encode."""
    return text.translate(_removed())


def split_lines(text: str) -> list[str]:
    """The lines of free text with any line endings; no empty last line for a final break."""
    lines = _LINE_BREAK_RE.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def caret(text: str) -> str:
    """Non-ASCII characters as ``cat -v`` shows their UTF-8 bytes: ``é`` becomes ``M-CM-)``."""
    def meta(match: re.Match[str]) -> str:
        out = []
        for byte in match.group().encode("utf-8"):
            low = byte & 0x7F
            out.append("M-" + ("^?" if low == 0x7F else "^" + chr(low + 64) if low < 32
                               else chr(low)))
        return "".join(out)
    return _NON_ASCII_RE.sub(meta, text)


def _strip_high(text: str) -> str:
    return _NON_ASCII_RE.sub("", text)


class Renderer:
    """Turns answer lines into wire bytes under the operator's output rules.

    ``replacements`` are ``(old, new)`` pairs applied in order to every line, which
    each leaves at most MAX_REPLACED_LINE_CHARS long; control and invisible
    characters are removed after them, so no replacement can introduce one.
    Construction builds the removal table if this process has none yet, so that no
    answer waits for it.
    """

    def __init__(self, replacements: Iterable[tuple[str, str]] = (),
                 high_bytes: str = "pass") -> None:
        self.replacements = tuple(replacements)
        self._removed = _removed()
        high: dict[str, Callable[[str], str] | None] = {
            "pass": None, "strip": _strip_high, "caret": caret}
        self._high = high[high_bytes]

    def line(self, text: str) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)[:MAX_REPLACED_LINE_CHARS]
        text = text.translate(self._removed)
        return self._high(text) if self._high else text

    def render(self, lines: Iterable[str]) -> bytes:
        """The wire bytes of ``lines`` (strings without line endings), each ended by CRLF."""
        return "".join(self.line(text) + "\r\n" for text in lines).encode("utf-8")
