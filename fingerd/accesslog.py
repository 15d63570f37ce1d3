"""One log line per request, that no client can forge, at a fraction of a query's cost.

Fields are ``key=value``; the only free text, the user name asked for, is
written only when ``log_queries`` is on (RFC 1288 3.2.7 leaves that to the
operator) and always quoted with every control character, quote, backslash
and non-ASCII character escaped, so a query holding a newline or an escape
sequence stays one inert line.

A line is formatted here, stamped with the time the request ended, and handed
to the first handler of the root logger that takes lines in batches (the
worker's pipe to the parent, process/worker/logpipe.py): no logging record a line.
Without one (the server run in a process of its own) each line is a record.
"""

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional, Protocol

from fingerd.each_second import EachSecond
from fingerd.logsetup import STAMP_END

if TYPE_CHECKING:
    from fingerd.serving.loop import Answer

log = logging.getLogger("fingerd.access")

#: Most characters of a queried name written to the log.
MAX_LOGGED_NAME = 64


def escape(text: str) -> str:
    """``text`` as printable ASCII inside double quotes."""
    out = []
    for ch in text[:MAX_LOGGED_NAME]:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    suffix = "..." if len(text) > MAX_LOGGED_NAME else ""
    return '"' + "".join(out) + suffix + '"'


class LineSink(Protocol):
    """Where stamped access lines go in batches (process.logrelay.PipeHandler)."""

    def add_access_line(self, line: str) -> None: ...


def batching_handler(logger: logging.Logger = log) -> Optional[LineSink]:
    """The first handler ``logger``'s records reach that takes access lines, or None."""
    current: Optional[logging.Logger] = logger
    while current is not None:
        for handler in current.handlers:
            if hasattr(handler, "add_access_line"):
                return handler
        current = current.parent if current.propagate else None
    return None


def _local_time(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


class AccessLog:
    """Formats each answered request as a line; any thread may call ``log``.

    ``sink`` takes the lines (by default the batching handler found at
    construction); ``clock`` gives the time of each line.
    """

    def __init__(self, log_queries: bool, sink: Optional[LineSink] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.log_queries = log_queries
        sink = sink if sink is not None else batching_handler()
        self._add: Callable[[str], None] = (sink.add_access_line if sink is not None
                                            else self._one_record)
        self._clock = clock
        self._stamps = EachSecond(_local_time)

    def log(self, service: str, peer: Sequence[object], answer: "Answer",
            seconds: float) -> None:
        """One line for ``answer`` (a serving.loop.Answer) sent to ``peer``."""
        now = self._clock()
        second = self._stamps.at(int(now))
        line = (f"{second.text},{int((now - second.second) * 1000):03d}{STAMP_END}"
                f"access service={service} peer={peer[0]} kind={answer.kind or '-'} "
                f"outcome={answer.outcome} bytes={len(answer.data)} seconds={seconds:.6f}")
        if answer.asker is not None:
            line += f" login={escape(answer.asker)}"
        if self.log_queries and answer.name is not None:
            line += f" user={escape(answer.name)}"
        self._add(line)

    @staticmethod
    def _one_record(line: str) -> None:
        log.info("%s", line.partition(STAMP_END)[2])

