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


@cache
def _removed() -> dict[int, str | None]:
    """The translate table deleting every control but TAB, every character of
    INVISIBLE_CATEGORIES in this Python's Unicode database and LATER_INVISIBLE,
    and replacing SURROGATES.

    Built once a process, on first use: a pass over all code points takes about
    0.1 s, which a command that only reads the configuration should not pay.
    Never mutated once built, so every thread may use it.
    """
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    invisible = [point for point, category in enumerate(categories)
                 if category in INVISIBLE_CATEGORIES]
    table: dict[int, str | None] = dict.fromkeys([*_CONTROLS, *invisible, *LATER_INVISIBLE])
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

    ``replacements`` are ``(old, new)`` pairs applied in order to every line;
    control and invisible characters are removed after them, so no replacement
    can introduce one. Construction builds the removal table if this process has
    none yet, so that no answer waits for it.
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
            text = text.replace(old, new)
        text = text.translate(self._removed)
        return self._high(text) if self._high else text

    def render(self, lines: Iterable[str]) -> bytes:
        """The wire bytes of ``lines`` (strings without line endings), each ended by CRLF."""
        return "".join(self.line(text) + "\r\n" for text in lines).encode("utf-8")
