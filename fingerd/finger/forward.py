"""Forwarding a query to another finger server (RFC 1288 2.4), one hop, bounded.

The right-most host is removed and the rest of the query sent to that host's
port 79, its user part as the client's own bytes; its answer is relayed, cut
at MAX_FORWARD_BYTES and filtered like local output by the renderer. Every
failure (an unknown or malformed host, a user part holding a control
character, a refusal, silence past the timeout) becomes one line of answer,
never an exception and never a hang.
"""

import re
import time
from typing import Optional

from fingerd.config_keys import valid_host
from fingerd.finger import client
from fingerd.finger.answer import Query
from fingerd.finger.dialer import Dialer
from fingerd.finger.output import split_lines

FINGER_PORT = 79

#: Most bytes of an upstream answer relayed.
MAX_FORWARD_BYTES = 64 * 1024

#: The control characters, TAB aside (as on output), that no user part is sent on with:
#: an upstream may end its line at a bare CR or its string at a NUL, and so answer for
#: another user than the client named. Bytes 0x80 to 0x9F are parts of UTF-8 characters.
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def forwarded_line(query: Query) -> Optional[bytes]:
    """The query line (without its ending) the upstream is sent: ``/W`` if asked for and
    the user part as the client sent it (parse_query decoded it as Latin-1, which
    encoding gives back every byte); None when the user part holds a control character."""
    user = query.user.encode("latin-1")
    if _CONTROL_RE.search(user):
        return None
    return (b"/W " if query.verbose else b"") + user


#: Least time left for a forward worth starting: below it, the query is answered at once.
MIN_FORWARD_SECONDS = 0.05


class Forwarder:
    """Asks upstream servers; its name lookups are bounded in time and in number
    (dialer.py), so that no forwarded query holds a pool thread past ``timeout``."""

    def __init__(self, timeout: float, port: int = FINGER_PORT, max_bytes: int = MAX_FORWARD_BYTES,
                 dialer: Optional[Dialer] = None) -> None:
        self.timeout = timeout
        self.port = port
        self.max_bytes = max_bytes
        self.dialer = dialer or Dialer()

    def __call__(self, query: Query, read_at: Optional[float] = None) -> tuple[bool, list[str]]:
        """``(ok, lines)``: the upstream's answer, or one line saying why there is none.

        ``read_at`` is when the query was read (time.monotonic): ``timeout`` counts from
        then, so that a forward that waited for a thread (forwards to silent hosts hold
        them) has only what is left, and one that waited it all is not sent at all."""
        host = query.hosts[-1]
        if not valid_host(host):
            # Escaped: the output drops control characters, which would make a host
            # such as "127.0.0.1\0" read as a valid one.
            return False, [f"{repr(host[:64])[1:-1]}: not a host name"]
        line = forwarded_line(query)
        if line is None:
            return False, [f"{host}: not asked, the user holds a control character"]
        timeout = self.timeout
        if read_at is not None:
            timeout -= time.monotonic() - read_at
            if timeout < MIN_FORWARD_SECONDS:
                return False, [f"{host}: not asked, other forwards held every thread for "
                               f"{self.timeout:g} s"]
        try:
            data, cut = client.finger(host, self.port, line, timeout, self.max_bytes,
                                      self.dialer)
        except client.NoAnswer as exc:
            return False, [f"{host}: {exc}"]
        lines: list[str] = split_lines(data.decode("utf-8", "replace"))
        if cut:
            lines.append(f"(answer from {host} cut at {self.max_bytes} bytes)")
        return True, lines
