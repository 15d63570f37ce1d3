"""socketserver servers that read requests on a selector and answer them on a pool.

socketserver's ThreadingMixIn starts a thread per connection with no bound,
and its handler timeout applies to each read rather than to the request. So
here one thread per listening socket accepts connections and reads their
request lines on a selector, under a total deadline. A complete request
whose answer cannot block is answered on that thread; any other goes to the
shared bounded pool. Both use socketserver's ``finish_request`` /
RequestHandlerClass / ``handle_error`` / ``shutdown_request`` sequence. An
idle client costs a file descriptor and a dict entry, never a thread.
"""

import collections
import errno
import logging
import selectors
import socket
import socketserver
import threading
import time

from fingerd.limits import ACCEPTS_PER_TURN, DRAIN_BYTES
from fingerd.metrics import (ERROR, REJECT_BUSY, REJECT_NOT_LOCAL, REJECT_RESOURCES,
                             REJECT_TIMEOUT, REJECT_TOO_LONG)
from fingerd.serving.lines import LineTooLong, take_lines

log = logging.getLogger(__name__)

BUSY = b"Server busy, try again later\r\n"
INTERNAL_ERROR = b"Internal error in server\r\n"

#: Seconds accepting pauses after the process ran out of descriptors.
ACCEPT_PAUSE_SECONDS = 0.1

_READ_SIZE = 4096
_LISTENER = object()
_WAKER = object()
_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class ConnectionGate:
    """Bounds the connections accepted and not yet answered by the servers that share it.

    A plain counter under a lock: threading.BoundedSemaphore is written in
    Python and costs several times more on every connection.
    """

    def __init__(self, limit, active_gauge=None):
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        if active_gauge is not None:
            active_gauge.set_function(lambda: self.active)

    def enter(self):
        """Take a slot if one is free; never waits."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self):
        with self._lock:
            self.active -= 1


class Context:
    """What the servers sharing one connection limit share."""

    def __init__(self, pool, gate, metrics, request_timeout, access_log=None):
        self.pool = pool
        self.gate = gate
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.access_log = access_log


class Request:
    """An accepted connection and, once read, its request lines."""

    __slots__ = ("sock", "peer", "lines", "buf", "started", "deadline", "outcome", "answered",
                 "kind", "name", "sent", "inline", "unsent")

    def __init__(self, sock, peer, started, deadline):
        self.sock = sock
        self.peer = peer
        self.lines = None
        self.buf = bytearray()
        self.started = started
        self.deadline = deadline
        self.outcome = ERROR
        self.answered = False
        self.kind = None
        self.name = None
        self.sent = 0
        self.inline = False
        self.unsent = None


class LineRequestHandler(socketserver.BaseRequestHandler):
    """Answers one request whose lines were read already.

    It runs on a pool thread, or on the reading thread itself when the
    server says the answer cannot block. Subclasses implement
    ``respond(lines)`` returning ``(outcome, bytes)``.
    """

    def handle(self):
        request = self.request
        request.outcome, reply = self.respond(request.lines)
        self.server.deliver(request, reply)

    def respond(self, lines):
        raise NotImplementedError


def send_quietly(sock, data):
    """Send ``data``; a client that went away or stopped reading is its own problem."""
    try:
        sock.sendall(data)
    except OSError:
        pass


class LineServer(socketserver.TCPServer):
    """A TCP server on a socket bound elsewhere, reading ``lines_per_request`` lines a request.

    ``serve_forever`` runs in a thread of its own; ``shutdown`` from another
    thread stops it at once. Subclasses set ``service``, ``lines_per_request``
    and ``max_line_bytes``, and may refuse peers in ``verify_request``.
    """

    service = None
    lines_per_request = 1
    max_line_bytes = 1024
    #: Whether requests are counted in the metrics and the access log.
    counted = True

    def __init__(self, sock, handler_class, context):
        super().__init__(sock.getsockname()[:2], handler_class, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.context = context
        self._requests = context.metrics.requests
        self._rejected = context.metrics.connections_rejected
        self._pending = collections.OrderedDict()
        self._stopping = False
        self._listener_closed = False
        self._drain_until = None
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_paused_until = None
        self._starved = False

    def server_close(self):
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def begin_shutdown(self, grace):
        """Stop accepting now; requests already being read get ``grace`` seconds to arrive.

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

    def shutdown(self):
        self.begin_shutdown(0.0)
        self.wait_stopped(5.0)

    def serve_forever(self, poll_interval=None):
        self._stopped.clear()
        self.socket.setblocking(False)
        self._wake_r.setblocking(False)
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.socket, selectors.EVENT_READ, _LISTENER)
            sel.register(self._wake_r, selectors.EVENT_READ, _WAKER)
            while not (self._stopping and self._stop_accepting(sel) and not self._pending):
                accept = False
                for key, _ in sel.select(self._next_timeout()):
                    if key.data is _LISTENER:
                        accept = True
                    elif key.data is _WAKER:
                        self._wake_r.recv(64)
                    else:
                        self._read(sel, key.data)
                if accept:
                    # After the connections already waiting: new ones must not jump ahead.
                    self._accept(sel)
                now = time.monotonic()
                self._expire(sel, now)
                if self._accept_paused_until is not None and now >= self._accept_paused_until \
                        and not self._stopping:
                    self._accept_paused_until = None
                    sel.register(self.socket, selectors.EVENT_READ, _LISTENER)
        finally:
            for request in list(self._pending.values()):
                self._close_unread(sel, request, None)
            sel.close()
            self._stopped.set()

    def _stop_accepting(self, sel):
        """Close the listening socket once, so new clients are refused rather than queued.

        Returns True, for use in the loop condition.
        """
        if not self._listener_closed:
            self._listener_closed = True
            if self._accept_paused_until is None:
                sel.unregister(self.socket)
            self._accept_paused_until = None
            self.socket.close()
            for request in self._pending.values():
                request.deadline = min(request.deadline, self._drain_until)
        return True

    def _next_timeout(self):
        timeout = None
        if self._pending:
            first = next(iter(self._pending.values()))
            timeout = max(0.0, first.deadline - time.monotonic())
        if self._accept_paused_until is not None:
            pause = max(0.0, self._accept_paused_until - time.monotonic())
            timeout = pause if timeout is None else min(timeout, pause)
        return timeout

    def _accept(self, sel):
        gate = self.context.gate
        timeout = self.context.request_timeout
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, peer = self.socket.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._pause_accepting(sel, exc)
                else:
                    log.warning("%s: accept failed: %s", self.service, exc)
                return
            if self._starved:
                self._starved = False
                log.info("%s: accepting connections again", self.service)
            if not self.verify_request(sock, peer):
                self._rejected.labels(REJECT_NOT_LOCAL).inc()
                sock.close()
                continue
            if not gate.enter():
                self._rejected.labels(REJECT_BUSY).inc()
                refuse_busy(sock)
                continue
            now = time.monotonic()
            self._read(sel, Request(sock, peer, now, now + timeout), watched=False)

    def _pause_accepting(self, sel, exc):
        """Out of descriptors: stop polling the listener briefly instead of spinning on it.

        Logged once when it starts and once when accepting works again, not at
        every pause.
        """
        self._rejected.labels(REJECT_RESOURCES).inc()
        sel.unregister(self.socket)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        if not self._starved:
            self._starved = True
            log.warning("%s: cannot accept connections: %s; retrying every %.1f s",
                        self.service, exc.strerror, ACCEPT_PAUSE_SECONDS)

    def _read(self, sel, request, watched=True):
        """Read what has arrived; on a new connection, before watching it, since the
        query has often arrived with it and needs no trip through the selector.

        Accepted sockets are left blocking: this thread reads and sends with
        MSG_DONTWAIT instead, which saves a system call a connection, and the
        pool sets a timeout before it writes.
        """
        try:
            chunk = request.sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not watched:
                self._watch(sel, request)
            return
        except OSError:
            chunk = b""
        request.buf += chunk
        try:
            lines = self.take_request(request.buf, eof=not chunk)
        except LineTooLong:
            self._close_unread(sel, request, REJECT_TOO_LONG, watched)
            return
        if lines is None:
            if not watched:
                self._watch(sel, request)
            return
        if not lines:
            self._close_unread(sel, request, None, watched)
            return
        if watched:
            self._forget(sel, request)
        request.lines = lines
        request.buf = None
        if self.answers_inline(request):
            self._answer_inline(request)
        else:
            self.process_request(request, request.peer)

    def _watch(self, sel, request):
        self._pending[request.sock.fileno()] = request
        sel.register(request.sock, selectors.EVENT_READ, request)

    def answers_inline(self, request):
        """Whether answering ``request`` cannot block, so the reading thread may do it.

        Anything that may wait (a file, another server, an fsync) goes to the pool.
        """
        return False

    def take_request(self, buf, eof):
        """The request's lines once ``buf`` holds them all, else None; see take_lines."""
        return take_lines(buf, self.lines_per_request, self.max_line_bytes, eof)

    def _expire(self, sel, now):
        pending = self._pending
        while pending:
            request = next(iter(pending.values()))
            if request.deadline > now:
                return
            self._close_unread(sel, request, REJECT_TIMEOUT)

    def _forget(self, sel, request):
        del self._pending[request.sock.fileno()]
        sel.unregister(request.sock)

    def _close_unread(self, sel, request, reason, watched=True):
        """Close a connection whose request was never complete, counting why."""
        if reason is not None:
            self._rejected.labels(reason).inc()
        if watched:
            self._forget(sel, request)
        request.sock.close()
        self.context.gate.leave()

    def process_request(self, request, client_address):
        self.context.pool.submit(self._answer, request, client_address)

    def _answer(self, request, client_address):
        """Runs on a pool thread: answer with blocking writes under the timeout, then finish."""
        try:
            request.sock.setblocking(True)
            request.sock.settimeout(self.context.request_timeout)
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._finish(request)

    def _answer_inline(self, request):
        """Answer on the reading thread; an answer too big for the socket's buffer is
        finished by the pool."""
        request.inline = True
        try:
            self.finish_request(request, request.peer)
        except Exception:
            self.handle_error(request, request.peer)
        if request.unsent is None:
            self._finish(request)
        else:
            self.context.pool.submit(self._send_rest, request)

    def deliver(self, request, reply):
        """Send ``reply``; on the reading thread never wait, leaving the rest in ``unsent``."""
        request.answered = True
        request.sent = len(reply)
        if not request.inline:
            send_quietly(request.sock, reply)
            return
        try:
            sent = request.sock.send(reply, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        if sent < len(reply):
            request.unsent = reply[sent:]

    def _send_rest(self, request):
        try:
            request.sock.setblocking(True)
            request.sock.settimeout(self.context.request_timeout)
            send_quietly(request.sock, request.unsent)
        finally:
            self._finish(request)

    def _finish(self, request):
        """Count, close and free the connection's slot.

        Counting comes before the close, so a client that has read its answer
        finds it counted.
        """
        self.count(request)
        self.shutdown_request(request)
        self.context.gate.leave()

    def count(self, request):
        """Record an answered request in the metrics and, if enabled, the access log."""
        if not self.counted:
            return
        seconds = time.monotonic() - request.started
        self._requests.record(self.service, request.outcome, seconds, request.sent,
                              request.kind)
        if self.context.access_log is not None:
            self.context.access_log.log(self.service, request, seconds)

    def handle_error(self, request, client_address):
        """Log the failure once with its traceback, and tell the client if it has no answer."""
        request.outcome = ERROR
        log.exception("%s: internal error answering %s", self.service, client_address[0])
        if not request.answered:
            self.deliver(request, INTERNAL_ERROR)

    def shutdown_request(self, request):
        request.sock.close()


def refuse_busy(sock):
    """Tell a client beyond the connection limit so at once, without waiting on it.

    What the client already sent is read and dropped first, so that the close
    sends FIN and the busy line is not destroyed by a reset.
    """
    sock.setblocking(False)
    try:
        sock.send(BUSY)
        sock.recv(DRAIN_BYTES)
    except OSError:
        pass
    sock.close()
