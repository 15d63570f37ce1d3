"""The serving loop: a thread per service that accepts, reads, answers and closes.

socketserver's ThreadingMixIn starts a thread per connection with no bound,
and its timeout applies to each read rather than to the request. Here one
thread per service accepts connections on all of its listening sockets and
reads their requests on epoll under one deadline (``request_timeout``). A
complete request goes
to the service's handler, a socketserver request handler that turns the
request into an immutable Answer and never touches the connection: on this
thread when the answer cannot block, else on the shared bounded pool. The
loop alone owns a connection: ``_finish`` counts the answer, closes the
socket and frees the slot. An idle client costs a descriptor and a dict
entry, never a thread.

Per query this is the whole cost in Python, so it is lean on purpose:
epoll directly rather than selectors, accepted connections as the C socket
type (see ``_accept``), and on the finger port TCP_DEFER_ACCEPT, so that a
connection usually arrives with its query and is answered without ever
being watched.
"""

import errno
import functools
import logging
import select
import socket
import socketserver
import struct
import threading
import time
from _socket import socket as raw_socket
from typing import NamedTuple, Optional

from fingerd.finger.bounded import Unfinished
from fingerd.limits import ACCEPTS_PER_TURN, DRAIN_BYTES, LINGER_DRAIN_BYTES
from fingerd.outcomes import (ERROR, REJECT_BUSY, REJECT_NOT_LOCAL, REJECT_PROXY, REJECT_RESOURCES,
                              REJECT_SHED, REJECT_TIMEOUT, REJECT_TOO_LONG)
from fingerd.serving.gate import source_of
from fingerd.serving.lines import LineTooLong, take_lines
from fingerd.serving.proxy_header import ProxyHeaderError, parse_proxy_header, trusted

log = logging.getLogger(__name__)

BUSY = b"Server busy, try again later\r\n"

#: Seconds accepting pauses after the process ran out of descriptors.
ACCEPT_PAUSE_SECONDS = 0.1

#: Seconds between looks for silent connections past ``first_byte_timeout`` while
#: a service is crowded: the look walks the oldest connections, so it is rationed.
SWEEP_SECONDS = 0.25

#: Seconds the kernel holds a silent new connection where a service defers
#: accepting: long enough to spare the loop a wake-up for most connections,
#: short enough that a silent client's deadline still holds.
DEFER_ACCEPT_SECONDS = 1

_READ_SIZE = 4096
#: Flags of an answer's send on the reading thread: never wait, and hold the last
#: segment back (MSG_MORE) for the close that follows at once, which sends it with
#: the FIN: one segment for the client to take instead of two.
_SEND_LAST = socket.MSG_DONTWAIT | socket.MSG_MORE
#: struct tcp_info: the bytes read of it, and where its u32 tcpi_unacked lies.
_TCP_INFO_BYTES = 28
_UNACKED_OFFSET = 24
_UNACKED = struct.Struct("=I")
_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class Answer(NamedTuple):
    """What a handler made of one request: the outcome label, the bytes to send, and
    for the metrics and the access log the request's kind, the name it asked for and,
    where the service knows it, the local account that asked."""

    outcome: str
    data: bytes
    kind: Optional[str] = None
    name: Optional[str] = None
    asker: Optional[str] = None


INTERNAL_ERROR = Answer(ERROR, b"Internal error in server\r\n")


class RequestHandler(socketserver.BaseRequestHandler):
    """One request's protocol logic, and nothing else.

    ``self.request`` is the complete request as the server framed it (its
    lines), ``self.client_address`` the peer. Subclasses implement
    ``respond``; its Answer is left in ``self.answer`` for the loop.
    """

    def handle(self):
        self.answer = self.respond(self.request)

    def respond(self, request):
        raise NotImplementedError


class Context:
    """What the servers sharing one connection limit share."""

    def __init__(self, pool, gate, metrics, request_timeout, access_log=None,
                 first_byte_timeout=None):
        self.pool = pool
        self.gate = gate
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.access_log = access_log
        #: Seconds from its connect a connection may send nothing while the gate is
        #: crowded; never more than ``request_timeout``.
        self.first_byte_timeout = min(first_byte_timeout or request_timeout, request_timeout)


class Connection:
    """An accepted connection: the loop's thread owns it until its request is complete,
    then the thread that answers it does."""

    __slots__ = ("sock", "fd", "peer", "source", "started", "deadline", "buf")

    def __init__(self, sock, peer, source, started, deadline):
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.source = source
        self.started = started
        self.deadline = deadline
        self.buf = b""


class Listener:
    """One listening socket of a service, bound elsewhere."""

    __slots__ = ("sock", "fd", "family", "where")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        address = sock.getsockname()
        #: How the log names it: HOST:PORT, or a Unix socket's path.
        self.where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"


class Server:
    """Serves one service on its listening sockets, bound elsewhere; one subclass a service.

    All of a service's connections are in one place, so that its share of
    connections, its per-source bounds and its shedding hold across its
    addresses (IPv4 and IPv6, TCP and a Unix socket).

    Subclasses set ``service`` and ``handler_class`` and the framing
    (``lines_per_request``, ``max_line_bytes`` or their own
    ``take_request``), and may refuse peers in ``accepts`` and answer
    requests on the reading thread in ``answers_inline``.
    ``serve_forever`` runs in a thread of its own; ``begin_shutdown`` and
    ``wait_stopped`` stop it from another.
    """

    service = None
    handler_class = None
    lines_per_request = 1
    max_line_bytes = 1024
    #: Whether answers are counted in the metrics and the access log.
    counted = True
    #: Whether the kernel may hold a new connection until its first bytes arrive
    #: (TCP_DEFER_ACCEPT), for protocols where the client speaks first.
    defers_accept = False
    #: What a client beyond a connection limit is told, in the service's protocol.
    busy_answer = BUSY
    #: The Answer to a request whose handler failed, in the service's protocol.
    internal_error = INTERNAL_ERROR
    #: Whether a client may still be sending when it is answered (HTTP: a head past its
    #: bound, a body): then the answer goes out at once rather than held back for the
    #: close (MSG_MORE), and the close reads and drops what the client sent meanwhile,
    #: since closing with input unread sends a reset, which destroys the answer.
    lingers = False
    #: Networks whose connections begin with a PROXY protocol header, which names the
    #: client; None where the service does not take one.
    proxy_from = None

    def __init__(self, socks, context):
        self.listeners = [Listener(sock) for sock in socks]
        self.where = ", ".join(listener.where for listener in self.listeners)
        self.context = context
        self._record = context.metrics.requests.record
        self._rejected = context.metrics.connections_rejected
        #: Seconds a silent client may already have waited in the kernel when
        #: it is accepted; its deadline is counted from its connect.
        self._deferral = 0
        if self.defers_accept and context.request_timeout >= DEFER_ACCEPT_SECONDS:
            for listener in self.listeners:
                listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                                         DEFER_ACCEPT_SECONDS)
            self._deferral = DEFER_ACCEPT_SECONDS
        self._epoll = select.epoll()
        #: What to call when a descriptor is readable: the one callback style.
        self._callbacks = {}
        #: Connections waiting for the rest of their request, by descriptor, in
        #: order of arrival: of deadline, within the deferral (see ``_watch``).
        self._pending = {}
        self._listening = True
        self._paused_until = None
        self._starved = False
        self._stopping = False
        self._drain_until = None
        self._next_sweep = 0.0
        self._send_flags = socket.MSG_DONTWAIT if self.lingers else _SEND_LAST
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

    # What a service chooses.

    def accepts(self, peer):
        """Whether to serve a client at ``peer`` at all."""
        return True

    def identify(self, sock, peer):
        """What the handler and the access log know the client by: its address, or more
        that must be learnt right after accept, before reading."""
        return peer

    def take_request(self, buf, eof):
        """The request's lines once ``buf`` holds them all, else None; see take_lines."""
        return take_lines(buf, self.lines_per_request, self.max_line_bytes, eof)

    def answers_inline(self, request):
        """Whether answering ``request`` cannot block, so the reading thread may do it.

        Anything that may wait (a file, another server, an fsync) goes to the pool.
        """
        return False

    def respond(self, request, peer):
        """The Answer to a complete request: the handler's."""
        return self.handler_class(request, peer, self).answer

    def respond_inline(self, request, peer):
        """The Answer to a request ``answers_inline`` took, on the reading thread."""
        return self.respond(request, peer)

    # Running and stopping.

    def serve_forever(self):
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self._wake_r.setblocking(False)
        self._listen()
        self._register(self._wake_r.fileno(), self._on_wake)
        callbacks = self._callbacks
        poll = self._epoll.poll
        try:
            while self._listening or self._pending:
                for fd, _events in poll(self._next_timeout()):
                    # Gone when an earlier callback of this turn closed it.
                    callback = callbacks.get(fd)
                    if callback is not None:
                        callback()
                if self._pending or self._paused_until is not None:
                    self._on_time(time.monotonic())
        finally:
            for conn in list(self._pending.values()):
                self._close_unanswered(conn, None)
            self._stopped.set()

    def begin_shutdown(self, grace):
        """Stop accepting now; requests being read get ``grace`` seconds to arrive.

        Returns at once; ``wait_stopped`` waits for the loop to end.
        """
        self._drain_until = time.monotonic() + grace
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def wait_stopped(self, timeout):
        if not self._stopped.wait(timeout):
            log.error("%s server did not stop within %.1f s", self.service, timeout)

    def close(self):
        """Free the loop's own descriptors once it has stopped."""
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
        for listener in self.listeners:
            listener.sock.close()

    def _on_wake(self):
        """A stop was asked for: close the listening sockets, so that new clients are
        refused rather than queued, and give requests being read until the drain ends."""
        try:
            self._wake_r.recv(64)
        except OSError:
            pass
        if not self._stopping or not self._listening:
            return
        self._listening = False
        if self._paused_until is None:
            self._deafen()
        self._paused_until = None
        for listener in self.listeners:
            listener.sock.close()
        for conn in self._pending.values():
            conn.deadline = min(conn.deadline, self._drain_until)

    def _next_timeout(self):
        deadline = None
        for conn in self._pending.values():
            deadline = conn.deadline
            break
        if self._paused_until is not None and (deadline is None
                                               or self._paused_until < deadline):
            deadline = self._paused_until
        if deadline is not None and self._next_sweep < deadline and \
                self.context.gate.crowded():
            deadline = self._next_sweep
        return -1 if deadline is None else max(0.0, deadline - time.monotonic())

    def _register(self, fd, callback):
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def _unregister(self, fd):
        self._epoll.unregister(fd)
        del self._callbacks[fd]

    def _listen(self):
        for listener in self.listeners:
            self._register(listener.fd, functools.partial(self._accept, listener))

    def _deafen(self):
        for listener in self.listeners:
            self._unregister(listener.fd)

    def _on_time(self, now):
        """Close connections whose request did not arrive in time; accept again after a pause."""
        pending = self._pending
        while pending:
            conn = next(iter(pending.values()))
            if conn.deadline > now:
                break
            self._close_unanswered(conn, REJECT_TIMEOUT)
        if pending and now >= self._next_sweep and self.context.gate.crowded():
            self._sweep_silent(now)
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._listen()

    def _sweep_silent(self, now):
        """Crowded: close the connections that have sent nothing for ``first_byte_timeout``
        since their connect, so that holding slots costs an attacker more than it costs
        everyone else (counted as timeouts, which they are, early)."""
        self._next_sweep = now + SWEEP_SECONDS
        connected_before = now - self.context.first_byte_timeout + self._deferral
        silent = []
        for conn in self._pending.values():
            if conn.started > connected_before:
                break
            if not conn.buf:
                silent.append(conn)
        for conn in silent:
            self._close_unanswered(conn, REJECT_TIMEOUT)

    # A connection's life, in order.

    def _accept(self, listener):
        """Accept what is waiting on ``listener``, up to ACCEPTS_PER_TURN.

        socket.accept wraps each connection in socket.socket, whose Python
        constructor and checks cost more than the rest of a query's Python
        time; the C socket type that ``_accept``'s descriptor is wrapped in
        here has every method the loop uses.
        """
        gate = self.context.gate
        timeout = self.context.request_timeout
        accept = listener.sock._accept
        family = listener.family
        for _ in range(min(self._queued(listener), ACCEPTS_PER_TURN)):
            try:
                fd, peer = accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._pause_accepting(exc)
                else:
                    log.warning("%s: accept failed: %s", self.service, exc)
                return
            sock = raw_socket(family, socket.SOCK_STREAM, 0, fd)
            if self._starved:
                self._starved = False
                log.info("%s: accepting connections again", self.service)
            if not self.accepts(peer):
                self._rejected.labels(REJECT_NOT_LOCAL).inc()
                sock.close()
                continue
            if self.proxy_from is None:
                source = source_of(peer[0]) if peer else ""
            elif trusted(peer[0], self.proxy_from):
                source = None  # the header will tell
            else:
                self._rejected.labels(REJECT_PROXY).inc()
                sock.close()
                continue
            refused = gate.enter(source)
            if refused == REJECT_BUSY and self._shed_idle():
                refused = gate.enter(source)
            if refused is not None:
                self._rejected.labels(refused).inc()
                refuse_busy(sock, self.busy_answer)
                continue
            now = time.monotonic()
            # The query has often arrived with the connection: read before watching.
            self._read(Connection(sock, self.identify(sock, peer), source, now, now + timeout))

    def _shed_idle(self):
        """Full: close the oldest connection that has sent nothing yet, to make room.

        Holding slots with silent connections then costs an attacker a new
        connection for each one shed, rather than costing everyone else their
        answers. True when one was closed.
        """
        for conn in self._pending.values():
            if not conn.buf:
                self._close_unanswered(conn, REJECT_SHED)
                return True
        return False

    def _queued(self, listener):
        """How many connections wait to be accepted: on TCP the listener's accept queue
        (Linux reports it as tcpi_unacked), at least 1 since the listener was readable.

        Accepting exactly that many spares the accept that fails with EAGAIN, which
        costs as much as the rest of a query's system calls together.
        """
        if listener.family == socket.AF_UNIX:
            return ACCEPTS_PER_TURN
        info = listener.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        return max(1, _UNACKED.unpack_from(info, _UNACKED_OFFSET)[0]) \
            if len(info) >= _TCP_INFO_BYTES else ACCEPTS_PER_TURN

    def _pause_accepting(self, exc):
        """Out of descriptors: stop polling the listeners briefly instead of spinning on them.

        Logged when it starts and when accepting works again, not at every pause.
        """
        self._rejected.labels(REJECT_RESOURCES).inc()
        self._deafen()
        self._paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        if not self._starved:
            self._starved = True
            log.warning("%s: cannot accept connections: %s; retrying every %.1f s",
                        self.service, exc.strerror, ACCEPT_PAUSE_SECONDS)

    def _read(self, conn):
        """Read what has arrived; watch for more, or pass the complete request on.

        Accepted sockets stay blocking: this thread reads and sends with
        MSG_DONTWAIT, which saves a system call a connection, and a pool
        thread sets a timeout before it writes.
        """
        try:
            chunk = conn.sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._watch(conn)
            return
        except OSError:
            chunk = b""
        conn.buf += chunk
        if conn.source is None and not self._take_proxy_header(conn, eof=not chunk):
            return
        try:
            request = self.take_request(conn.buf, eof=not chunk)
        except LineTooLong:
            self._close_unanswered(conn, REJECT_TOO_LONG)
            return
        if request is None:
            self._watch(conn)
            return
        self._unwatch(conn)
        if not request:
            self._close_unanswered(conn, None)
        elif self.answers_inline(request):
            self._answer_inline(conn, request)
        else:
            self.context.pool.submit(self._answer_on_pool, conn, request)

    def _take_proxy_header(self, conn, eof):
        """Behind a proxy: take the header from the start of the request and count the
        client it names against ``max_per_source``. True once it has; otherwise the
        connection is watched for the rest or closed, without an answer."""
        try:
            header = parse_proxy_header(conn.buf)
        except ProxyHeaderError:
            header = None
            eof = True
        if header is None:
            if eof:
                self._close_unanswered(conn, REJECT_PROXY)
            else:
                self._watch(conn)
            return False
        conn.buf = conn.buf[header.length:]
        if header.client is not None:
            conn.peer = header.client
        source = source_of(conn.peer[0])
        refused = self.context.gate.claim(source)
        if refused is not None:
            self._rejected.labels(refused).inc()
            self._unwatch(conn)
            refuse_busy(conn.sock, self.busy_answer)
            self.context.gate.leave(None)
            return False
        conn.source = source
        return True

    def _watch(self, conn):
        """Wait for the rest of the request. A connection accepted with nothing to read
        was held by the kernel for the deferral first: its deadline counts from its connect."""
        if conn.fd not in self._pending:
            if not conn.buf:
                conn.deadline -= self._deferral
            self._pending[conn.fd] = conn
            self._register(conn.fd, functools.partial(self._read, conn))

    def _unwatch(self, conn):
        if self._pending.pop(conn.fd, None) is not None:
            self._unregister(conn.fd)

    def _respond(self, conn, request, respond):
        """``respond``'s Answer; a failure is logged once with its traceback and
        answered ``Internal error in server``. So is a call that may block and did not
        finish in time (Unfinished), but it is logged where it was made, once a streak."""
        try:
            return respond(request, conn.peer)
        except Unfinished:
            return self.internal_error
        except Exception:
            log.exception("%s: internal error answering %s", self.service, conn.peer[0])
            return self.internal_error

    def _answer_inline(self, conn, request):
        """Answer on the reading thread, never waiting: an answer too big for the
        socket's buffer is finished by the pool."""
        answer = self._respond(conn, request, self.respond_inline)
        try:
            sent = conn.sock.send(answer.data, self._send_flags)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = len(answer.data)
        if sent < len(answer.data):
            self.context.pool.submit(self._send, conn, answer, sent)
        else:
            self._finish(conn, answer)

    def _answer_on_pool(self, conn, request):
        self._send(conn, self._respond(conn, request, self.respond), 0)

    def _send(self, conn, answer, offset):
        """On a pool thread: send the answer from ``offset`` with blocking writes under
        the timeout; a client that went away or stopped reading is its own problem."""
        try:
            conn.sock.settimeout(self.context.request_timeout)
            conn.sock.sendall(memoryview(answer.data)[offset:])
        except OSError:
            pass
        self._finish(conn, answer)

    def _finish(self, conn, answer):
        """Count, close and free the connection's slot: the one end of every answer.

        Counting comes before the close, so a client that has read its answer
        finds it counted.
        """
        try:
            if self.counted:
                seconds = time.monotonic() - conn.started
                self._record(self.service, answer.outcome, seconds, len(answer.data),
                             answer.kind)
                access_log = self.context.access_log
                if access_log is not None:
                    access_log.log(self.service, conn.peer, answer, seconds)
        finally:
            if self.lingers:
                drain(conn.sock)
            conn.sock.close()
            self.context.gate.leave(conn.source)

    def _close_unanswered(self, conn, reason):
        """Close a connection whose request never came whole, counting why."""
        if reason is not None:
            self._rejected.labels(reason).inc()
        self._unwatch(conn)
        conn.sock.close()
        self.context.gate.leave(conn.source)


def drain(sock):
    """Send FIN after the answer, then read and drop up to LINGER_DRAIN_BYTES of what the
    client sent that was never read, without waiting for more."""
    try:
        sock.shutdown(socket.SHUT_WR)
        for _ in range(LINGER_DRAIN_BYTES // DRAIN_BYTES):
            if not sock.recv(DRAIN_BYTES, socket.MSG_DONTWAIT):
                return
    except OSError:
        pass


def refuse_busy(sock, answer):
    """Tell a client beyond a connection limit so at once, without waiting on it.

    What the client already sent is read and dropped first, so that the close
    sends FIN and the busy line is not destroyed by a reset.
    """
    sock.setblocking(False)
    try:
        sock.send(answer)
        sock.recv(DRAIN_BYTES)
    except OSError:
        pass
    sock.close()
