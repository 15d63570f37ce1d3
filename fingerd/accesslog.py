"""One log line per request, that no client can forge.

Fields are ``key=value``; the only free text, the user name asked for, is
written only when ``log_queries`` is on (RFC 1288 3.2.7 leaves that to the
operator) and always quoted with every control character, quote, backslash
and non-ASCII character escaped, so a query holding a newline or an escape
sequence stays one inert line.
"""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

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


class AccessLog:
    def __init__(self, log_queries: bool) -> None:
        self.log_queries = log_queries

    def log(self, service: str, peer: Sequence[object], answer: "Answer",
            seconds: float) -> None:
        """One line for ``answer`` (a serving.loop.Answer) sent to ``peer``."""
        line = (f"access service={service} peer={peer[0]} kind={answer.kind or '-'} "
                f"outcome={answer.outcome} bytes={len(answer.data)} seconds={seconds:.6f}")
        if answer.asker is not None:
            line += f" login={escape(answer.asker)}"
        if self.log_queries and answer.name is not None:
            line += f" user={escape(answer.name)}"
        log.info("%s", line)
