"""Signals in the root parent: handlers that do nothing, and a socket that wakes its loop.

Python writes each signal's number to the wake-up socket, and the loop's
selector calls ``on_signal`` with it, so that no work ever runs inside a
handler (gunicorn's arbiter learned that logging in one deadlocks).
"""

import contextlib
import selectors
import signal
import socket
from collections.abc import Iterator
from types import FrameType
from typing import Callable, Optional

from fingerd.process.exits_and_signals import HANDLED_SIGNALS


@contextlib.contextmanager
def signals_to(selector: selectors.BaseSelector,
               on_signal: Callable[[int], None]) -> Iterator[None]:
    """While in the block, HANDLED_SIGNALS come to ``on_signal`` from ``selector``'s loop,
    each once a turn however often it was sent."""
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _record_only)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    selector.register(wake_r, selectors.EVENT_READ, lambda wake: _read(wake, on_signal))
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)


def _read(wake: socket.socket, on_signal: Callable[[int], None]) -> None:
    try:
        data = wake.recv(256)
    except BlockingIOError:
        return
    for signum in dict.fromkeys(data):
        on_signal(signum)


def _record_only(signum: int, frame: Optional[FrameType]) -> None:
    """Python writes ``signum`` to the wake-up socket; the loop does the work."""
