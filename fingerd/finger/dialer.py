"""Connecting to another finger server within a deadline, name lookup included.

``getaddrinfo`` cannot be interrupted: a slow or silent DNS server holds its
caller for as long as the resolver's own retries take, which is beyond the
daemon's control. A forwarded query must not hold a pool thread that long,
so each lookup is a bounded call (bounded.py): on a thread of its own, waited
for at most what is left of the query's deadline, at most ``max_lookups`` at
once, those abandoned by their callers included.
"""

import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from fingerd.finger.bounded import BoundedCalls, HangLog, Unfinished

log = logging.getLogger(__name__)


class NoRoute(OSError):
    """The host could not be looked up or reached within the deadline; the text says why."""


#: Lookups at once, abandoned ones included.
MAX_LOOKUPS = 4

#: getaddrinfo's answer: ``(family, type, proto, canonname, address)`` a way to the host.
AddrInfo = Sequence[tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]]


class Dialer:
    """``connect(host, port, timeout)``: a connected TCP socket, or NoRoute."""

    def __init__(self, max_lookups: int = MAX_LOOKUPS,
                 getaddrinfo: Callable[..., AddrInfo] = socket.getaddrinfo) -> None:
        self._lookups = BoundedCalls(max_lookups, "name lookup")
        self._hangs = HangLog(self._lookups, log, "forwarding",
                              "the query answered that the host was not reached")
        self._getaddrinfo = getaddrinfo

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """Look ``host`` up and connect to its addresses in turn, all within ``timeout``
        seconds. Raises NoRoute (an OSError), or socket.gaierror for an unknown host."""
        deadline = time.monotonic() + timeout
        error: OSError = NoRoute(f"no answer within {round(timeout, 2):g} s")
        for family, kind, proto, _name, address in self.lookup(host, port, timeout):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(left)
                sock.connect(address)
                return sock
            except socket.timeout:
                sock.close()
                error = NoRoute(f"no answer within {round(timeout, 2):g} s")
            except OSError as exc:
                sock.close()
                error = exc
        raise error

    def lookup(self, host: str, port: int, timeout: float) -> AddrInfo:
        """getaddrinfo's answer for a TCP connection to ``host``, waited for at most
        ``timeout`` seconds. An address literal is answered at once, on this thread."""
        try:
            return self._getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                     flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        try:
            found = self._lookups.call(timeout, functools.partial(
                self._getaddrinfo, host, port, type=socket.SOCK_STREAM))
        except Unfinished as exc:
            self._hangs.unfinished(f"looking up {host!r}", exc)
            raise NoRoute(str(exc)) from None
        except (OSError, UnicodeError):
            self._hangs.finished()  # an answer in time, if not an address
            raise
        self._hangs.finished()
        return found
