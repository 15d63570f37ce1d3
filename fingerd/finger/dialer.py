"""Connecting to another finger server within a deadline, name lookup included.

``getaddrinfo`` cannot be interrupted: a slow or silent DNS server holds its
caller for as long as the resolver's own retries take, which is beyond the
daemon's control. A forwarded query must not hold a pool thread that long,
so each lookup runs on a thread of its own while the caller waits at most
what is left of its deadline. At most ``max_lookups`` lookups run at once,
those abandoned by their callers included: when that many are stuck, a new
lookup fails at once rather than adding threads.
"""

import socket
import threading
import time


class NoRoute(OSError):
    """The host could not be looked up or reached within the deadline; the text says why."""


#: Lookups at once, abandoned ones included.
MAX_LOOKUPS = 4


class Dialer:
    """``connect(host, port, timeout)``: a connected TCP socket, or NoRoute."""

    def __init__(self, max_lookups=MAX_LOOKUPS, getaddrinfo=socket.getaddrinfo):
        self._slots = threading.BoundedSemaphore(max_lookups)
        self._getaddrinfo = getaddrinfo

    def connect(self, host, port, timeout):
        """Look ``host`` up and connect to its addresses in turn, all within ``timeout``
        seconds. Raises NoRoute (an OSError), or socket.gaierror for an unknown host."""
        deadline = time.monotonic() + timeout
        error = NoRoute(f"no answer within {timeout:g} s")
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
                error = NoRoute(f"no answer within {timeout:g} s")
            except OSError as exc:
                sock.close()
                error = exc
        raise error

    def lookup(self, host, port, timeout):
        """getaddrinfo's answer for a TCP connection to ``host``, waited for at most
        ``timeout`` seconds. An address literal is answered at once, on this thread."""
        try:
            return self._getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                     flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        if not self._slots.acquire(blocking=False):
            raise NoRoute("too many name lookups in progress")
        outcome = []
        done = threading.Event()

        def run():
            try:
                outcome.append(self._getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except Exception as exc:
                outcome.append(exc)
            finally:
                self._slots.release()
                done.set()

        try:
            threading.Thread(target=run, name="fingerd-lookup", daemon=True).start()
        except RuntimeError:
            self._slots.release()
            raise NoRoute("cannot start a name lookup") from None
        if not done.wait(timeout):
            raise NoRoute(f"name lookup took longer than {timeout:g} s")
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]
