"""Detaching from the terminal without losing the word on whether startup worked.

python-daemon's DaemonContext does the detaching (double fork, setsid,
umask, working directory, descriptors, standard streams). Its first parent
exits at once, so, as twistd does, the process the operator started forks
first and waits on a pipe until the daemon says it serves, or why it could
not: ``fingerd`` then exits 0 only when the daemon is really up.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import daemon

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

log = logging.getLogger("fingerd")

#: Seconds the starting process waits for the daemon's word.
READY_TIMEOUT = 60.0


def detach(preserve: Iterable[FileDescriptorLike]) -> Callable[[str | None], None]:
    """Become a daemon keeping the descriptors in ``preserve``; returns ``report(reason)``.

    Only the daemon returns. ``report(None)`` tells the waiting process that
    startup worked, ``report(reason)`` that it failed; it may be called once. A
    waiting process that is gone (killed, or ended by SIGQUIT: the signals that stop
    the daemon wait while it starts) costs the daemon nothing: it serves on, and
    says once in its log that nobody heard. Python ignores SIGPIPE, so the write
    fails with EPIPE rather than killing the daemon.
    """
    preserve = list(preserve)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        # The daemon alone holds the listening sockets: a copy kept here would keep one
        # it closes listening, so that at a failed start the daemon found the setter's
        # Unix socket still served, and left it and the directories made for it behind.
        for item in preserve:
            if isinstance(item, socket.socket):
                item.close()
        os._exit(_wait_for_word(read_end, pid))
    os.close(read_end)
    context = daemon.DaemonContext(
        detach_process=True, files_preserve=list(preserve) + [write_end], umask=0o022,
        working_directory="/", prevent_core=True, signal_map={})
    context.open()

    def report(reason: str | None) -> None:
        message = b"OK\n" if reason is None else f"ERR {reason}\n".encode()
        try:
            os.write(write_end, message)
        except BrokenPipeError:
            log.warning("the process that started fingerd is gone: nobody was told that %s",
                        "it serves" if reason is None else "its start failed")
        finally:
            os.close(write_end)

    return report


def _wait_for_word(fd: int, child: int) -> int:
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            print("fingerd: the daemon did not report within "
                  f"{READY_TIMEOUT:.0f} s; see its log", file=sys.stderr)
            return 1
        chunk = os.read(fd, 512)
        if not chunk:
            break
        data += chunk
    os.waitpid(child, 0)
    if data.startswith(b"OK"):
        return 0
    reason = data[4:].decode("utf-8", "replace").strip() if data.startswith(b"ERR ") else \
        "the daemon exited during startup; see its log"
    print(f"fingerd: {reason}", file=sys.stderr)
    return 1
