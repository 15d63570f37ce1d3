"""The connections a serving loop waits on for the rest of their request, and their ends.

Kept in order of arrival, which is also the order of their deadlines
(within the deferral, see ``watch``), so the next deadline is the first
entry's and shedding finds the oldest first. Owned by the loop's thread.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Iterator
from typing import Any

from fingerd.limits import DRAIN_BYTES
from fingerd.outcomes import REJECT_PROXY, REJECT_SHED, REJECT_TIMEOUT
from fingerd.serving.gate import source_of
from fingerd.serving.listening import held_back
from fingerd.serving.proxy_header import ProxyHeaderError, parse_proxy_header
from fingerd.serving.service import ServiceSpec

#: Seconds between looks for connections open ``first_byte_timeout`` without a whole
#: request while a service is crowded: the look walks the oldest, so it is rationed.
SWEEP_SECONDS = 0.25

#: Seconds a connection must have been open without a whole request before it may be
#: shed for a newcomer: one accepted a moment ago may have sent its request already.
SHED_AFTER_SECONDS = 1.0


class Pending:
    """Connections of one service whose request has not arrived whole."""

    def __init__(self, service: ServiceSpec, rejected: Any, deferral: float,
                 register: Callable[[int, Callable[[], None]], None],
                 unregister: Callable[[int], None]) -> None:
        #: By descriptor, in order of arrival.
        self.by_fd: dict[int, Any] = {}
        self.next_sweep = 0.0
        self._accepts = service.accepts
        self._refusal = service.refusal
        self._gate = service.gate
        self._busy_answer = service.busy_answer
        self._first_byte_timeout = service.first_byte_timeout
        self._rejected = rejected
        self._deferral = deferral
        self._register = register
        self._unregister = unregister

    def watch(self, conn: Any, on_readable: Callable[[Any], None], silent: bool = False) -> None:
        """Wait for the rest of ``conn``'s request. A connection ``silent`` at its first
        read, nothing received, that the kernel held back for the deferral has its
        deadline and its age counted from its connect (one whose buffer is empty because
        its PROXY header was all it sent was not held); awaiting its header, it counts
        against the proxy's address from now on (``take_proxy_header``)."""
        if conn.fd not in self.by_fd:
            if silent:
                if self._deferral and held_back(conn.sock):
                    conn.deadline -= self._deferral
                    conn.opened -= self._deferral
                if conn.source is None and not self._claim(conn, source_of(conn.peer[0])):
                    return
            self.by_fd[conn.fd] = conn
            self._register(conn.fd, functools.partial(on_readable, conn))

    def unwatch(self, conn: Any) -> None:
        if self.by_fd.pop(conn.fd, None) is not None:
            self._unregister(conn.fd)

    def take_proxy_header(self, conn: Any, eof: bool,
                          on_readable: Callable[[Any], None]) -> bool:
        """Behind a proxy: take the header from the start of the request, and count the
        client it names against ``max_per_source`` if the service serves it. True once it
        has; otherwise the connection is watched for the rest or closed, without an answer.

        A header not whole at the first read, or not begun (``watch``), counts against
        the connecting address (the proxy's) until it is: processes there cannot hold
        the share with unfinished or unsent headers, and such connections are the first
        shed (``shed_oldest``). One whole at the first read, as a proxy sends it, is
        counted against its client alone.
        """
        try:
            header = parse_proxy_header(conn.buf)
        except ProxyHeaderError:
            header = None
            eof = True
        if header is None:
            if eof:
                self.close_unanswered(conn, REJECT_PROXY)
            elif conn.source is None and not self._claim(conn, source_of(conn.peer[0])):
                return False
            else:
                self.watch(conn, on_readable)
            return False
        conn.buf = conn.buf[header.length:]
        if header.client is not None:
            conn.peer = header.client
        if self._accepts is not None and not self._accepts(conn.peer):
            self.close_unanswered(conn, self._refusal)
            return False
        if not self._claim(conn, source_of(conn.peer[0])):
            return False
        conn.awaiting_header = False
        return True

    def _claim(self, conn: Any, source: Any) -> bool:
        """Count ``conn`` against ``source`` instead of what it counted against; beyond
        ``max_per_source`` the client is told busy and the connection closed."""
        refused = self._gate.claim(source) if conn.source != source else None
        if refused is not None:
            self._rejected.labels(refused).inc()
            self.unwatch(conn)
            refuse_busy(conn.sock, self._busy_answer(conn.buf))
            self._gate.leave(conn.source)
            return False
        if conn.source is not None and conn.source != source:
            self._gate.release(conn.source)
        conn.source = source
        return True

    def close_unanswered(self, conn: Any, reason: str | None) -> None:
        """Close a connection whose request never came whole, counting why."""
        if reason is not None:
            self._rejected.labels(reason).inc()
        self.unwatch(conn)
        conn.sock.close()
        self._gate.leave(conn.source)

    def expire(self, now: float) -> None:
        """Close connections whose request did not arrive in time; while crowded, those
        without a whole request since ``first_byte_timeout`` too."""
        by_fd = self.by_fd
        while by_fd:
            conn = next(iter(by_fd.values()))
            if conn.deadline > now:
                break
            self.close_unanswered(conn, _late(conn))
        if by_fd and now >= self.next_sweep and self._gate.crowded():
            self._sweep_unfinished(now)

    def _sweep_unfinished(self, now: float) -> None:
        """Crowded: close the connections open ``first_byte_timeout`` without a whole
        request, whether silent or sending a byte at a time, so that holding slots costs
        an attacker more than it costs everyone else (counted as timeouts, which they
        are, early)."""
        self.next_sweep = now + SWEEP_SECONDS
        late = list(self._opened_before(now - self._first_byte_timeout))
        for conn in late:
            self.close_unanswered(conn, _late(conn))

    def _opened_before(self, moment: float) -> Iterator[Any]:
        """The connections opened at ``moment`` or before, oldest first.

        Kept in order of accepting; a connection's opening is at most the
        deferral before its accepting, so the walk stops at the first accepted
        after ``moment`` plus the deferral.
        """
        accepted_before = moment + self._deferral
        for conn in self.by_fd.values():
            if conn.started > accepted_before:
                return
            if conn.opened <= moment:
                yield conn

    def shed_oldest(self, now: float) -> bool:
        """Full: close the oldest connection still awaiting its PROXY header, else the
        oldest open SHED_AFTER_SECONDS without a whole request, to make room.

        Holding slots with silent or byte-at-a-time connections then costs an
        attacker a new connection for each one shed, rather than costing
        everyone else their answers; a connection whose request may not have
        been read yet is never shed. True when one was closed.
        """
        for conn in self.by_fd.values():
            if conn.awaiting_header:
                self.close_unanswered(conn, REJECT_SHED)
                return True
        for conn in self._opened_before(now - SHED_AFTER_SECONDS):
            self.close_unanswered(conn, REJECT_SHED)
            return True
        return False

    def cut_to(self, deadline: float) -> None:
        """No request may arrive after ``deadline`` (the drain of a stop)."""
        for conn in self.by_fd.values():
            conn.deadline = min(conn.deadline, deadline)

    def close_all(self) -> None:
        for conn in list(self.by_fd.values()):
            self.close_unanswered(conn, None)



def _late(conn: Any) -> str:
    """Why a connection is closed for taking too long: a PROXY header timing out is
    counted ``proxy``, any other request ``timeout``."""
    return REJECT_PROXY if conn.awaiting_header else REJECT_TIMEOUT

def refuse_busy(sock: Any, answer: bytes) -> None:
    """Tell a client beyond a connection limit so at once, without waiting on it.

    The FIN follows the busy line at once, and what the client already sent is
    read and dropped, so that the close sends no reset; a request arriving
    after the close is answered with one, but the client has its line and
    the end of the stream before it.
    """
    sock.setblocking(False)
    try:
        sock.send(answer)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(DRAIN_BYTES)
    except OSError:
        pass
    sock.close()
