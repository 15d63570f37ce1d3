"""Connections held open by clients at chosen loopback addresses: a few that send the start
of a request and nothing more, looks taken while they are young, and a slowloris that
reopens each one the server closes."""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.support.net import connect_from
from tests.support.polling import wait_until

#: How long a connection without a whole request is safe from being shed for a newcomer
#: (CONTRACT section 5).
YOUNG_SECONDS = 1.0

Seen = TypeVar("Seen")


def query_from(source: str, port: int, data: bytes = b"alice\r\n", timeout: float = 10) -> bytes:
    """Everything the service at ``port`` answers a client at ``source``."""
    with connect_from(source, port) as s:
        s.settimeout(timeout)
        s.sendall(data)
        chunks = []
        for _ in range(64):
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def held(port: int, count: int, source: str = "127.0.0.1",
         sends: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections from ``source`` that send ``sends`` (a request begun, or
    nothing) and then nothing more, closed on exit."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(connect_from(source, port))
            socks[-1].sendall(sends)
        yield socks
    finally:
        for s in socks:
            s.close()


def closed_by_server(socks: list[socket.socket]) -> list[socket.socket]:
    """Those of ``socks`` the server has closed (readable, and reading gives EOF)."""
    readable, _, _ = select.select(socks, [], [], 0)
    return [s for s in readable if s.recv(10) == b""]


def slots_freed(daemon: Any) -> Callable[[], object]:
    """A ``settle`` for ``while_young``: wait until ``daemon`` holds no connection."""
    return lambda: wait_until(lambda: daemon.metric("fingerd_connections_active") == 0,
                              what="every slot given back")


def while_young(hold: Callable[[], contextlib.AbstractContextManager[list[socket.socket]]],
                look: Callable[[list[socket.socket]], Seen],
                settle: Callable[[], object], seconds: float = YOUNG_SECONDS,
                attempts: int = 5) -> Seen:
    """What ``look(socks)`` saw while the connections ``hold()`` opened were all younger
    than ``seconds``.

    The server may close older ones (shed, or timed out), so a look that ended
    later is discarded and taken again with new connections, once ``settle()``
    has waited for the server to let go of the old ones, at most ``attempts``
    times. ``look`` returns what it saw, for the test to assert on.
    """
    for attempt in range(attempts):
        if attempt:
            settle()
        began = time.monotonic()
        with hold() as socks:
            seen = look(socks)
            if time.monotonic() - began < seconds:
                return seen
    pytest.fail(f"no look ended within {seconds} s of opening its connections "
                f"in {attempts} attempts")


class Slowloris:
    """``per_source`` connections from each of ``sources`` to ``port``, each sending
    ``sends`` and then nothing, on a thread of its own; a connection the server closes
    (or answers: a busy line, a 503) is closed and opened again at once.

    Bounded in time (``seconds``) and in connects (``most``); ``stop`` ends it early.
    """

    def __init__(self, port: int, sources: list[str], per_source: int, sends: bytes,
                 seconds: float = 60.0, most: int = 20000) -> None:
        self._port = port
        self._sources = sources
        self._per_source = per_source
        self._sends = sends
        self._deadline = time.monotonic() + seconds
        self._most = most
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)
        #: Connections opened so far, the first ones included.
        self.connects = 0

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(30)

    def _running(self) -> bool:
        return (not self._stopping.is_set() and time.monotonic() < self._deadline
                and self.connects < self._most)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            try:
                for source in self._sources:
                    for _ in range(self._per_source):
                        if self._running():
                            self._open(selector, source)
                while self._running():
                    for key, _events in selector.select(0.05):
                        s, source = key.data
                        selector.unregister(s)
                        s.close()
                        if self._running():
                            self._open(selector, source)
            finally:
                for key in list(selector.get_map().values()):
                    key.data[0].close()

    def _open(self, selector: selectors.BaseSelector, source: str) -> None:
        self.connects += 1
        s = connect_from(source, self._port)
        try:
            s.sendall(self._sends)
        except OSError:
            pass
        selector.register(s, selectors.EVENT_READ, (s, source))
