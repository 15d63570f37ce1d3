"""The serving loop: a thread per service that accepts, reads, answers and closes.

socketserver's ThreadingMixIn starts a thread per connection with no bound,
and its timeout applies to each read rather than to the request. Here one
thread per service accepts connections on all of its listening sockets and
reads their requests on epoll under one deadline (``request_timeout``). A
complete request goes to the service's handler, a socketserver request
handler that turns the request into an immutable Answer and never touches
the connection: on this thread when the answer cannot block, else on the
shared bounded pool. The loop alone owns a connection: ``_finish`` counts
the answer, closes the socket and frees the slot. An idle client costs a
descriptor and a dict entry, never a thread.

One loop class serves every service: what differs between them is the
ServiceSpec it is given (service.py), never a subclass.

Per query this is the whole cost in Python, so it is lean on purpose:
epoll directly, the C socket type (``_accept``), the accept queue rarely
asked (``_to_accept``), and on the finger port TCP_DEFER_ACCEPT, so that a
connection usually arrives with its query and is never watched.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import struct
import threading
import time
from _socket import socket as raw_socket
from collections.abc import Callable
from typing import Any

from fingerd.accesslog import AccessLog
from fingerd.finger.bounded import Unfinished
from fingerd.limits import ACCEPTS_PER_TURN, DRAIN_BYTES, LINGER_DRAIN_BYTES
from fingerd.metrics import Metrics, bucket_of
from fingerd.outcomes import REJECT_BUSY, REJECT_PROXY, REJECT_TOO_LONG
from fingerd.serving.allow import close_unheard
from fingerd.serving.gate import source_of
from fingerd.serving.lines import LineTooLong
from fingerd.serving.listening import Listener, Listeners
from fingerd.serving.pending import Pending, refuse_busy
from fingerd.serving.pool import Pool
from fingerd.serving.proxy_header import trusted
from fingerd.serving.service import Answer, ServiceSpec

__all__ = ["Connection", "RequestHandler", "ServingLoop", "drain"]

log = logging.getLogger(__name__)

_READ_SIZE = 4096
_STREAM, _DONTWAIT = socket.SOCK_STREAM, socket.MSG_DONTWAIT
#: Flags of an answer's send on the reading thread: never wait, and hold the last
#: segment back (MSG_MORE) for the close (or, where the service lingers, the
#: shutdown before its drain) that follows at once, which sends it with the FIN: one
#: segment for the client to take instead of two.
_SEND_LAST = _DONTWAIT | socket.MSG_MORE
#: struct tcp_info: the bytes read of it, and where its u32 tcpi_unacked lies.
_TCP_INFO_BYTES, _UNACKED_OFFSET = 28, 24
_UNACKED = struct.Struct("=I")
#: Most wake-ups in a row that a quiet listener accepts one without asking (_to_accept).
MAX_UNASKED = 31


class RequestHandler(socketserver.BaseRequestHandler):
    """One request's protocol logic, and nothing else, in socketserver's shape:
    ``self.request`` is the complete request as the service framed it,
    ``self.client_address`` the client as the service identified it, and
    ``self.server`` what the service gives its handler (its ServiceSpec's ``needs``),
    never the loop. Subclasses implement ``respond``; its Answer is left in
    ``self.answer`` for the loop, which alone sends, counts and closes."""

    answer: Answer

    def handle(self) -> None:
        self.answer = self.respond(self.request, self.server)

    def respond(self, request: Any, needs: Any) -> Answer:
        raise NotImplementedError


class Connection:
    """An accepted connection: the loop's thread owns it until its request is complete,
    then the thread that answers it does."""

    __slots__ = ("awaiting_header", "buf", "deadline", "fd", "opened", "peer", "sock", "source",
                 "started")

    def __init__(self, sock: Any, fd: int, peer: Any, source: Any, started: float,
                 deadline: float) -> None:
        self.sock = sock
        self.fd = fd
        self.peer = peer
        self.source = source
        self.started = started
        #: When the client connected, as far as the loop can tell (see Pending.watch).
        self.opened = started
        self.deadline = deadline
        self.buf = b""
        #: Whether the PROXY protocol header is still to come: until it has, ``source``
        #: is None (not read yet) or the connecting address's (Pending.take_proxy_header).
        self.awaiting_header = source is None


class ServingLoop:
    """Serves one service, described by ``service``, on its listening sockets, bound
    elsewhere.

    All of a service's connections are in one place, so that its share of
    connections, its per-source bounds and its shedding hold across its
    addresses (IPv4 and IPv6, TCP and a Unix socket). ``serve_forever``
    runs in a thread of its own; ``begin_shutdown`` and ``wait_stopped``
    stop it from another.
    """

    def __init__(self, socks: list, service: ServiceSpec, pool: Pool, metrics: Metrics,
                 access_log: AccessLog | None = None) -> None:
        self.service = service
        self._pool = pool
        self._this_thread = metrics.requests.this_thread
        self._rejected = metrics.connections_rejected
        self._access_log = access_log if service.counted else None
        self._epoll = select.epoll()
        #: What to call when a descriptor is readable: the one callback style.
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._send_flags = _SEND_LAST
        self._stopped = threading.Event()
        self.listeners = Listeners(socks, service, self._rejected, self._register,
                                   self._unregister, self._accept)
        self._pending = Pending(service, self._rejected, self.listeners.deferral,
                                self._register, self._unregister)
        #: The same dict as ``_pending.by_fd``, read directly on every turn and request.
        self._waiting = self._pending.by_fd

    # Running and stopping.

    def serve_forever(self) -> None:
        self.listeners.start(self._pending.cut_to)
        callbacks = self._callbacks
        poll = self._epoll.poll
        listeners = self.listeners
        waiting = self._waiting
        # Nothing waits and nothing is paused (the usual turn): no timeout to work out.
        timeout = -1.0
        try:
            while listeners.open or waiting:
                for fd, _events in poll(timeout):
                    # Gone when an earlier callback of this turn closed it.
                    callback = callbacks.get(fd)
                    if callback is not None:
                        callback()
                timeout = -1.0
                if waiting or listeners.paused_until is not None:
                    now = time.monotonic()
                    self._pending.expire(now)
                    listeners.resume_after_pause(now)
                    timeout = self._next_timeout(now)
        finally:
            self._pending.close_all()
            self._stopped.set()

    def begin_shutdown(self, grace: float) -> None:
        """Stop accepting now; requests being read get ``grace`` seconds to arrive.

        Returns at once; ``wait_stopped`` waits for the loop to end.
        """
        self.listeners.begin_close(grace)

    def wait_stopped(self, timeout: float) -> None:
        if not self._stopped.wait(timeout):
            log.error("%s server did not stop within %.1f s", self.service.name, timeout)

    def close(self) -> None:
        """Free the loop's own descriptors once it has stopped."""
        self._epoll.close()
        self.listeners.release()

    def _next_timeout(self, now: float) -> float:
        first = next(iter(self._waiting.values()), None)
        deadline = None if first is None else first.deadline
        paused_until = self.listeners.paused_until
        if paused_until is not None and (deadline is None or paused_until < deadline):
            deadline = paused_until
        next_sweep = self._pending.next_sweep
        if deadline is not None and next_sweep < deadline and self.service.gate.crowded():
            deadline = next_sweep
        return -1.0 if deadline is None else max(0.0, deadline - now)

    def _register(self, fd: int, callback: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def _unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)
        del self._callbacks[fd]

    # A connection's life, in order.

    def _accept(self, listener: Listener) -> None:
        """Accept what is waiting on ``listener`` (``_to_accept``) as the C socket type,
        which has every method the loop uses: socket.accept's socket.socket, whose
        Python constructor and checks cost more than the rest of a query's Python."""
        service = self.service
        gate = service.gate
        accept = listener.sock._accept  # type: ignore[attr-defined]
        family = listener.family
        listeners = self.listeners
        for _ in range(_to_accept(listener)):
            try:
                fd, peer = accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as exc:
                listeners.accept_failed(exc)
                return
            sock = raw_socket(family, _STREAM, 0, fd)
            if listeners.starved:
                listeners.accepting_again()
            if service.proxy_from is None:
                if service.accepts is not None and not service.accepts(peer):
                    self._rejected.labels(service.refusal).inc()
                    close_unheard(sock)
                    continue
                client = peer if service.identify is None else service.identify(sock, peer)
                counted_as = service.counted_as
                source = counted_as(client) if counted_as else source_of(peer[0]) if peer else ""
            elif trusted(peer[0], service.proxy_from):
                client, source = peer, None  # the header will tell; see Connection
            else:
                self._rejected.labels(REJECT_PROXY).inc()
                sock.close()
                continue
            refused = gate.enter(source)
            if refused == REJECT_BUSY and self._pending.shed_oldest(time.monotonic()):
                refused = gate.enter(source)
            if refused is not None:
                self._rejected.labels(refused).inc()
                refuse_busy(sock, service.busy_answer(b""))
                continue
            now = time.monotonic()
            # The query has often arrived with the connection: read before watching.
            self._read(Connection(sock, fd, client, source, now,
                                  now + service.request_timeout))

    def _read(self, conn: Connection) -> None:
        """Read what has arrived; watch for more, or pass the complete request on.

        Accepted sockets stay blocking: this thread reads and sends with
        MSG_DONTWAIT, which saves a system call a connection, and a pool
        thread sets a timeout before it writes.
        """
        try:
            chunk = conn.sock.recv(_READ_SIZE, _DONTWAIT)
        except BlockingIOError:
            self._pending.watch(conn, self._read, silent=True)
            return
        except OSError:
            chunk = b""
        conn.buf += chunk
        if conn.awaiting_header and not self._pending.take_proxy_header(
                conn, not chunk, self._read):
            return
        try:
            request = self.service.take_request(conn.buf, not chunk)
        except LineTooLong:
            self._pending.close_unanswered(conn, REJECT_TOO_LONG)
            return
        if request is None:
            self._pending.watch(conn, self._read)
            return
        if conn.fd in self._waiting:
            self._pending.unwatch(conn)
        answers_inline = self.service.answers_inline
        if not request:
            self._pending.close_unanswered(conn, None)
        elif answers_inline is not None and answers_inline(request):
            self._answer_inline(conn, request)
        elif self.service.waits_outside(request):
            self._pool.submit_slow(self.service.name, self._answer_on_pool, conn, request)
        else:
            self._pool.submit(self._answer_on_pool, conn, request)

    def _respond(self, conn: Connection, request: Any, inline: bool) -> Answer:
        """The handler's Answer (on the reading thread, the memo's where the service has
        one); a failure is logged once with its traceback and answered ``Internal error
        in server``. So is a call that may block and did not finish in time (Unfinished),
        but it is logged where it was made, once a streak."""
        service = self.service
        try:
            if inline and service.memo is not None:
                return service.memo(request, conn.peer, self._handled)
            return self._handled(request, conn.peer)
        except Unfinished:
            return service.internal_error(request)
        except Exception:
            log.exception("%s: internal error answering %s", service.name, conn.peer[0])
            return service.internal_error(request)

    def _handled(self, request: Any, client: Any) -> Answer:
        service = self.service
        answer: Answer = service.handler(request, client, service.needs).answer
        return answer

    def _answer_inline(self, conn: Connection, request: Any) -> None:
        """Answer on the reading thread, never waiting: the rest of an answer too big for
        the socket's buffer is sent by the pool, as a slow call (its reader may not read)."""
        answer = self._respond(conn, request, True)
        try:
            sent = conn.sock.send(answer.data, self._send_flags)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = len(answer.data)
        if sent < len(answer.data):
            self._pool.submit_slow("send", self._send, conn, answer, sent)
        else:
            self._finish(conn, answer, self.service.gate.leave)

    def _answer_on_pool(self, conn: Connection, request: Any) -> None:
        self._send(conn, self._respond(conn, request, False), 0)

    def _send(self, conn: Connection, answer: Answer, offset: int) -> None:
        """On a pool thread: send the answer from ``offset`` with blocking writes under
        the timeout; a client that went away or stopped reading is its own problem."""
        try:
            conn.sock.settimeout(self.service.request_timeout)
            conn.sock.sendall(memoryview(answer.data)[offset:])
        except OSError:
            pass
        self._finish(conn, answer, self.service.gate.hand_back)

    def _finish(self, conn: Connection, answer: Answer, free: Callable[[Any], None]) -> None:
        """Count, free the connection's slot and close (``free``: the gate's ``leave`` on
        the reading thread, ``hand_back`` on a pool thread): the one end of every answer.

        Both come before the end of the stream: a client that has read its answer
        finds it counted, and its next connection finds the slot free.
        """
        service = self.service
        try:
            if service.counted:
                seconds = time.monotonic() - conn.started
                tally = self._this_thread.tally  # this thread's own: no lock (metrics.Tally)
                tally.requests[service.name, answer.outcome, answer.kind,
                               bucket_of(seconds)] += 1
                tally.seconds[service.name] += seconds
                tally.sent[service.name] += len(answer.data)
                if self._access_log is not None:
                    self._access_log.log(service.name, conn.peer, answer, seconds)
        finally:
            free(conn.source)
            if service.lingers or len(conn.buf) >= _READ_SIZE:  # more may be unread
                drain(conn.sock)
            conn.sock.close()

def _to_accept(listener: Listener) -> int:
    """How many to accept now. Asking (``_queued``) is one of a query's 7 system calls
    with one client at a time: an ask that finds one lets the next 1, 3, 7... up to
    MAX_UNASKED wake-ups accept one each unasked (load then waits that many at most)."""
    if listener.unasked:
        listener.unasked -= 1
        return 1
    count = _queued(listener)
    if count == 1:
        listener.quiet = min(2 * listener.quiet + 1, MAX_UNASKED)
        listener.unasked = listener.quiet
    else:
        listener.quiet = 0
    return count


def _queued(listener: Listener) -> int:
    """How many wait: on TCP the accept queue (Linux's tcpi_unacked), at least 1, at most
    ACCEPTS_PER_TURN. Accepting that many spares the accept that fails with EAGAIN,
    which costs as much as the rest of a query's system calls together."""
    if listener.family == socket.AF_UNIX:
        return ACCEPTS_PER_TURN
    info = listener.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    if len(info) < _TCP_INFO_BYTES:
        return ACCEPTS_PER_TURN
    return min(max(1, _UNACKED.unpack_from(info, _UNACKED_OFFSET)[0]), ACCEPTS_PER_TURN)


def drain(sock: Any) -> None:
    """Send FIN after the answer, then drop up to LINGER_DRAIN_BYTES of input never read (a
    lingering service's, or past a query's read) without waiting: a close would reset. A
    pool thread's socket has a timeout, under which Python polls before each read even
    with MSG_DONTWAIT: made non-blocking first, lest kept-open clients hold the pool."""
    try:
        sock.shutdown(socket.SHUT_WR)
        if sock.gettimeout() is not None:
            sock.setblocking(False)
        for _ in range(LINGER_DRAIN_BYTES // DRAIN_BYTES):
            if not sock.recv(DRAIN_BYTES, socket.MSG_DONTWAIT):
                return
    except OSError:
        pass
