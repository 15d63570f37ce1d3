"""A loopback TCP relay in front of a real redis-server that holds back the reply to every
``EXEC`` it forwards: a Redis that applied a transaction but whose acknowledgement is late;
or, with ``held="request"``, every ``EXEC`` itself on its way to Redis: a write slower than
its writer waits, delivered even after the writer gave up; or, with ``held="cut"``, ends
the client's connection in place of the reply to ``EXEC``: a connection lost after Redis
applied a transaction.

Every other byte passes at once. The relay reads the commands each client sends (RESP
arrays) to know which reply answers ``EXEC``; a connection that subscribes is passed
through unread from then on, since its replies no longer answer commands one by one.
"""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Callable

#: What one recv takes at most.
CHUNK = 65536
#: Commands after which a connection's replies no longer answer commands one by one.
SUBSCRIBING = (b"SUBSCRIBE", b"PSUBSCRIBE")


def parse_value(buf: bytes, pos: int) -> tuple[object, int] | None:
    """The RESP2 value at ``buf[pos:]`` and the offset after it, or None if incomplete.

    Bulk strings come back as bytes, arrays as lists, the rest as their line."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line, after = buf[pos:pos + 1], buf[pos + 1:end], end + 2
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buf) < after + length + 2:
            return None
        return buf[after:after + length], after + length + 2
    if kind == b"*":
        items: list[object] = []
        for _ in range(max(int(line), 0)):
            parsed = parse_value(buf, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    return line, after


class ExecDelayRelay:
    """Listens on 127.0.0.1:``port`` and relays each connection to 127.0.0.1:``upstream``,
    holding each reply to ``EXEC`` (or each request holding one, with ``held="request"``)
    back ``delay`` seconds, what follows on the connection waiting behind it, or, with
    ``held="cut"``, ending the connection there. ``released``
    is set once a request held back was passed on (or found Redis gone). ``hang`` makes it
a Redis that accepts connections and answers nothing."""

    def __init__(self, port: int, upstream: int, delay: float, held: str = "reply") -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._upstream = upstream
        self._delay = delay
        self._held = held
        self.released = threading.Event()
        self._hung = threading.Event()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", port))

    def start(self) -> ExecDelayRelay:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        """Close every socket, which ends every thread, and wait for them."""
        self._stopping.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in list(self._threads):
            thread.join(10)

    def switch(self, upstream: int) -> None:
        """Relay the connections made from now on to 127.0.0.1:``upstream``, those made
        before staying where they are: a proxy that sends new connections to a new
        primary after a failover (HAProxy checking ``role:master``)."""
        self._upstream = upstream

    def hang(self) -> None:
        """From now on pass nothing on, either way, and answer nothing, while accepting
        connections still: a Redis that hangs."""
        self._hung.set()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._hung.is_set():
                with self._lock:
                    self._sockets.append(client)
                self._spawn(_swallow, client)
                continue
            server = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._sockets += [client, server]
            commands: collections.deque[bytes] = collections.deque()
            self._spawn(self._requests, client, server, commands)
            self._spawn(self._replies, server, client, commands)

    def _requests(self, client: socket.socket, server: socket.socket,
                  commands: collections.deque[bytes]) -> None:
        """Forward what the client sends at once, noting each command's name in order."""
        buf = b""
        while chunk := _recv(client):
            if self._hung.is_set():
                continue
            buf += chunk
            pos = 0
            holding = False
            while (parsed := parse_value(buf, pos)) is not None:
                command, pos = parsed
                if isinstance(command, list) and command:
                    commands.append(bytes(command[0]).upper())
                    holding |= self._held == "request" and commands[-1] == b"EXEC"
            buf = buf[pos:]
            if holding and self._stopping.wait(self._delay):
                break
            sent = _send(server, chunk)
            if holding:
                self.released.set()
            if not sent:
                break
        _end(server)

    def _replies(self, server: socket.socket, client: socket.socket,
                 commands: collections.deque[bytes]) -> None:
        """Forward each reply as it completes, the one to ``EXEC`` after the delay."""
        buf = b""
        passing = False
        while chunk := _recv(server):
            if self._hung.is_set():
                continue
            buf += chunk
            if not passing:
                pos = 0
                while not passing and (parsed := parse_value(buf, pos)) is not None:
                    start, pos = pos, parsed[1]
                    command = commands.popleft() if commands else b""
                    if command == b"EXEC" and self._held == "cut":
                        _end(client)
                        return
                    if (command == b"EXEC" and self._held == "reply"
                            and self._stopping.wait(self._delay)):
                        return
                    if not _send(client, buf[start:pos]):
                        return
                    passing = command in SUBSCRIBING
                buf = buf[pos:]
            if passing:
                if not _send(client, buf):
                    return
                buf = b""
        _end(client)


def _swallow(sock: socket.socket) -> None:
    """Read what ``sock`` sends until it closes, and answer nothing."""
    while _recv(sock):
        pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _end(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
