"""Text of a second, made once a second.

A time stamp's date and time change once a second, and formatting them costs
more than the rest of an access line or of an HTTP head: the access log and
the web directory's Date field keep the text of the current second. What is
kept is one immutable pair, replaced whole, so any thread may ask without a
lock (two threads crossing a second at once both make the text; one wins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Second(NamedTuple):
    """A second since the epoch and its text."""

    second: int
    text: str


class EachSecond:
    """``at(second)``: that second and ``make(second)``, made again only when the second
    changes."""

    def __init__(self, make: Callable[[int], str]) -> None:
        self._make = make
        self._last = Second(-1, "")

    def at(self, second: int) -> Second:
        last = self._last
        if last.second != second:
            last = self._last = Second(second, self._make(second))
        return last
