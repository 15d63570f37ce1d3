"""A service's listening sockets, bound elsewhere, as the serving loop accepts on them.

What the loop needs of them besides ``_accept``: how many connections wait
(so it never accepts in vain), deferred accepting where the client speaks
first, and a pause when the process runs out of descriptors.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from fingerd.outcomes import REJECT_RESOURCES
from fingerd.serving.service import ServiceSpec

log = logging.getLogger(__name__)

#: Seconds accepting pauses after the process ran out of descriptors.
ACCEPT_PAUSE_SECONDS = 0.1

#: Seconds the kernel holds a silent new connection where a service defers
#: accepting: long enough to spare the loop a wake-up for most connections,
#: short enough that a silent client's deadline still holds.
DEFER_ACCEPT_SECONDS = 1

_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

#: Linux's struct tcp_info up to tcpi_total_retrans, and where that field is.
_TCP_INFO_BYTES, _TOTAL_RETRANS = 104, struct.Struct("=I")
_TOTAL_RETRANS_OFFSET = 100


def held_back(sock: socket.socket) -> bool:
    """Whether the kernel held back ``sock``, accepted with nothing to read, for the
    deferral (TCP_DEFER_ACCEPT): it then resent its SYN-ACK as the deferral ended,
    which the connection counts among its retransmissions. One made from a SYN cookie,
    as when a burst overflows the listen queue, is accepted at once, its request
    perhaps on the way: that one is young, whatever the deferral."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return False
    return (len(info) >= _TCP_INFO_BYTES
            and _TOTAL_RETRANS.unpack_from(info, _TOTAL_RETRANS_OFFSET)[0] > 0)


class Listener:
    """One listening socket of a service, bound elsewhere."""

    __slots__ = ("family", "fd", "quiet", "sock", "unasked")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        #: Wake-ups left on which to accept one connection without asking how many
        #: wait, and how many the next ask that finds one leaves (loop._to_accept).
        self.unasked = 0
        self.quiet = 0


class Listeners:
    """The listening sockets of one service, polled by one loop until closed."""

    def __init__(self, socks: list, service: ServiceSpec, rejected: Any,
                 register: Callable[[int, Callable[[], None]], None],
                 unregister: Callable[[int], None], on_ready: Callable[[Listener], None]) -> None:
        """``on_ready(listener)`` is called when ``listener`` has connections waiting,
        once ``start`` has registered them (``register(fd, callback)``) for polling."""
        self.all = [Listener(sock) for sock in socks]
        self.open = True
        #: When accepting resumes after running out of descriptors; None when not paused.
        self.paused_until: float | None = None
        #: Seconds a silent client may already have waited in the kernel when
        #: it is accepted (``held_back``); its deadline is counted from its connect.
        self.deferral = 0
        self._name = service.name
        self._rejected = rejected
        #: Whether accepting failed for want of descriptors and has not worked since.
        self.starved = False
        self._polled = False
        self._register = register
        self._unregister = unregister
        self._on_ready = on_ready
        self._on_closed: Callable[[float], None] = _ignore
        self._closing = False
        self._drain_until = 0.0
        #: Whether ``start`` leaves the listeners unpolled until ``open_now``.
        self._held = False
        self._opening = False
        #: Set once this process has closed the listeners: from then on the kernel hands
        #: their connections to other processes only.
        self.closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        if service.defers_accept and service.request_timeout >= DEFER_ACCEPT_SECONDS:
            for listener in self.all:
                listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                                         DEFER_ACCEPT_SECONDS)
            self.deferral = DEFER_ACCEPT_SECONDS

    def hold(self) -> None:
        """Before the loop starts: accept nothing until ``open_now``. A worker waits so
        until the parent has its ready, and a reload's until the worker it replaces has
        stopped accepting, so that no client connecting after the reload is served with
        the configuration it replaced."""
        self._held = True

    def start(self, on_closed: Callable[[float], None]) -> None:
        """Poll every listener, unless held, and the wake-up of ``begin_close`` and
        ``open_now``: once closed, ``on_closed(drain_until)`` is called with the time the
        drain of a stop ends."""
        self._on_closed = on_closed
        for listener in self.all:
            listener.sock.setblocking(False)
        self._wake_r.setblocking(False)
        self._register(self._wake_r.fileno(), self._on_wake)
        if not self._held:
            self._listen()

    def open_now(self) -> None:
        """From any thread: start accepting, if held; the loop's thread does it.
        Idempotent, and nothing once closing."""
        self._opening = True
        self._wake()

    def begin_close(self, grace: float) -> None:
        """From any thread: close the listeners on the loop's thread, which then gives
        requests being read ``grace`` seconds to arrive. Returns at once."""
        self._drain_until = time.monotonic() + grace
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def release(self) -> None:
        """Free every descriptor once the loop has stopped."""
        self.close()
        self._wake_r.close()
        self._wake_w.close()

    def _on_wake(self) -> None:
        """A stop was asked for: close the listening sockets, so that new clients are
        refused rather than queued, and give requests being read until the drain ends.
        Or held listeners are to accept now."""
        try:
            self._wake_r.recv(64)
        except OSError:
            pass
        if self._closing and self.open:
            self.close()
            self._on_closed(self._drain_until)
        elif self._opening and self._held and self.open:
            self._held = False
            self._listen()

    def accepting_again(self) -> None:
        """A connection was accepted after a shortage: say so, once."""
        self.starved = False
        log.info("%s: accepting connections again", self._name)

    def accept_failed(self, exc: OSError) -> None:
        """Out of descriptors: stop polling the listeners briefly instead of spinning on them.

        Logged when it starts and when accepting works again, not at every pause;
        any other failure is logged as it comes.
        """
        if exc.errno not in _RESOURCE_ERRNOS:
            log.warning("%s: accept failed: %s", self._name, exc)
            return
        self._rejected.labels(REJECT_RESOURCES).inc()
        self._deafen()
        self.paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        if not self.starved:
            self.starved = True
            log.warning("%s: cannot accept connections: %s; retrying every %.1f s",
                        self._name, exc.strerror, ACCEPT_PAUSE_SECONDS)

    def resume_after_pause(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            self._listen()

    def close(self) -> None:
        """Stop polling and close every listener, so that new clients are refused rather
        than queued. Idempotent."""
        if self._polled:
            self._deafen()
        self.open = False
        self.paused_until = None
        for listener in self.all:
            listener.sock.close()
        self.closed.set()

    def _listen(self) -> None:
        for listener in self.all:
            self._register(listener.fd, functools.partial(self._on_ready, listener))
        self._polled = True

    def _deafen(self) -> None:
        for listener in self.all:
            self._unregister(listener.fd)
        self._polled = False


def _ignore(_deadline: float) -> None:
    """No one to tell that the listeners closed (the loop was never started)."""
