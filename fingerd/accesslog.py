"""One log line per request, that no client can forge, at a fraction of a query's cost.

Fields are ``key=value``; the only free text, the user name asked for, is
written only when ``log_queries`` is on (RFC 1288 3.2.7 leaves that to the
operator) and always quoted with every control character, quote, backslash
and non-ASCII character escaped, so a query holding a newline or an escape
sequence stays one inert line.

A request that ends leaves its line's fields as an Entry (a tuple: the time it
ended, its seconds, the service, the peer, the answer's kind, outcome and
size, the login and the name asked for) with the first handler of the root
logger that takes them in batches (the worker's pipe to the parent,
process/worker/logpipe.py), whose own thread makes the lines (``lines_of``) a batch
at a time: the request pays for a tuple, and the formatting, its code warm,
for thousands of lines at once; no logging record a line. Without such a
handler (the server run in a process of its own) each line is a record.
"""

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Optional, Protocol

from fingerd.each_second import EachSecond, Second
from fingerd.loghandlers import STAMP_END

if TYPE_CHECKING:
    from fingerd.serving.service import Answer

log = logging.getLogger("fingerd.access")

#: Most characters of a queried name written to the log.
MAX_LOGGED_NAME = 64


def escape(text: str) -> str:
    """``text`` as printable ASCII inside double quotes: ``\\"``, ``\\\\``, then ``\\xHH``,
    ``\\uHHHH`` or ``\\UHHHHHHHH`` for a character below U+0100, U+10000 or beyond, as
    Python writes them, so that each escape has one reading: a character, which for
    finger, whose queries are read as Latin-1, is a byte sent. A text longer than
    MAX_LOGGED_NAME is cut, marked by ``...`` after the closing quote, where no name can
    put it."""
    out = []
    for ch in text[:MAX_LOGGED_NAME]:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    suffix = "..." if len(text) > MAX_LOGGED_NAME else ""
    return '"' + "".join(out) + '"' + suffix


#: An access line's fields: (time the request ended, its seconds, service, peer
#: address, kind, outcome, bytes sent, login or None, name asked for or None).
Entry = tuple[float, float, str, object, Optional[str], str, int, Optional[str],
              Optional[str]]


class EntrySink(Protocol):
    """Where entries go in batches (process.worker.logpipe.PipeHandler)."""

    def add_access_entry(self, entry: Entry) -> None: ...


def batching_handler(logger: logging.Logger = log) -> Optional[EntrySink]:
    """The first handler ``logger``'s records reach that takes access entries, or None."""
    current: Optional[logging.Logger] = logger
    while current is not None:
        for handler in current.handlers:
            if hasattr(handler, "add_access_entry"):
                return handler
        current = current.parent if current.propagate else None
    return None


#: A line without its names: the stamp's second and millisecond, then the fields.
_LINE = ("%s,%s" + STAMP_END +
         "access service=%s peer=%s kind=%s outcome=%s bytes=%d seconds=%.6f")
#: The text of each millisecond of a stamp.
_MILLIS = tuple(f"{ms:03d}" for ms in range(1000))


def _local_time(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


_STAMPS = EachSecond(_local_time)


def lines_of(entries: Iterable[Entry]) -> list[str]:
    """The access line of each entry: its time stamp (local time, to the millisecond),
    STAMP_END, then its fields."""
    lines = []
    second = Second(-1, "")
    for now, seconds, service, peer, kind, outcome, size, login, name in entries:
        if int(now) != second.second:
            second = _STAMPS.at(int(now))
        line = _LINE % (second.text, _MILLIS[int((now - second.second) * 1000)], service,
                        peer, kind or "-", outcome, size, seconds)
        if login is not None:
            line += " login=" + escape(login)
        if name is not None:
            line += " user=" + escape(name)
        lines.append(line)
    return lines


class AccessLog:
    """Notes each answered request for its line; any thread may call ``log``.

    ``sink`` takes the entries (by default the batching handler found at
    construction); ``clock`` gives the time of each line.
    """

    def __init__(self, log_queries: bool, sink: Optional[EntrySink] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.log_queries = log_queries
        sink = sink if sink is not None else batching_handler()
        self._add: Callable[[Entry], None] = (sink.add_access_entry if sink is not None
                                              else self._one_record)
        self._clock = clock

    def log(self, service: str, peer: Sequence[object], answer: "Answer",
            seconds: float) -> None:
        """The entry of ``answer`` (a serving.service.Answer) sent to ``peer``."""
        self._add((self._clock(), seconds, service, peer[0], answer.kind, answer.outcome,
                   len(answer.data), answer.asker,
                   answer.name if self.log_queries else None))

    @staticmethod
    def _one_record(entry: Entry) -> None:
        log.info("%s", lines_of([entry])[0].partition(STAMP_END)[2])
