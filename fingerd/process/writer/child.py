"""The users file writer child's life: one write for each request on its socket.

Forked by the root parent (``filewriter``), root as the parent, doing
nothing but writes, one at a time. It receives a request (path, name,
status, and the seconds within which the new file must be renamed into
place), writes, and answers with a report: the file's signatures before
and after, or the error the setter's client is told, or that the outcome is
unknown (``unknown``: the new file is in place, not known durable), and the
signature of the version it now trusts (``StatusWriter``). Just before it
renames the new file into place it says so (COMMITTING): the rename is the
moment the file changes, so a child that ends after that note and before its
report leaves the parent unable to tell whether the set was written, and the
parent, which never looks at the disk itself, answers that it does not know.
Each is one JSON datagram on their socket, as on the worker's channel. It
logs nothing: the parent logs what the reports say. It ends when the parent
shuts its side of the socket.

A write called off because its file was ready too late still leaves the old
file read and validated: that version, unchanged, is trusted, so that the next
set only edits it. A file of hundreds of megabytes takes longer to validate
than a set may wait; without that, every set on it would time out.
"""

import json
import os
import signal
import socket
import time
from typing import Any, Callable, Optional

from fingerd.process.exits_and_signals import HANDLED_SIGNALS
from fingerd.users import fileio
from fingerd.users.editing import OutcomeUnknown, StatusWriter, StoreError

#: The error of a set not written before the worker stops waiting for it.
NOT_IN_TIME = "the users file was not written in time"

#: The note a child sends before the rename that may change the file, for the request it
#: is writing; its report on that request follows.
COMMITTING = {"committing": True}

#: Most bytes of a request: a path of PATH_MAX and a status of MAX_STATUS_BYTES, each
#: character escaped in JSON (under 28 KiB), fit twice over.
MAX_REQUEST_BYTES = 65536

#: Signals meant for the parent (or its process group, at Ctrl-C): ignored here, so that
#: none stops a write halfway.
IGNORED_SIGNALS = tuple(signum for signum in HANDLED_SIGNALS if signum != signal.SIGCHLD)


def serve(sock: socket.socket, writer: StatusWriter) -> int:
    """The child's life: a write for each request until the parent shuts its side; its
    exit status. The parent forked it with HANDLED_SIGNALS blocked."""
    signal.set_wakeup_fd(-1)
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    # Nothing the parent holds (listening sockets, the worker's channel) stays open here.
    own = sock.fileno()
    os.closerange(3, own)
    os.closerange(own + 1, max(os.sysconf("SC_OPEN_MAX"), own + 2))
    note = json.dumps(COMMITTING).encode()
    while True:
        request = sock.recv(MAX_REQUEST_BYTES)
        if not request:
            return 0
        report = write_one(writer, json.loads(request), lambda: sock.sendall(note))
        sock.sendall(json.dumps(report).encode())


def write_one(writer: StatusWriter, request: dict[str, Any],
              committing: Callable[[], None]) -> dict[str, Any]:
    """Carry out one request, calling ``committing()`` just before the rename; the report
    on it."""
    commit_by = time.monotonic() + request["commit_within"]
    called_off = []

    def in_time() -> None:
        if time.monotonic() > commit_by:
            called_off.append(True)
            raise StoreError(NOT_IN_TIME)
        committing()

    report: dict[str, Any]
    before = _version(request["path"])
    try:
        old, new = writer(request["path"], request["name"], request["status"],
                          before_rename=in_time)
        report = {"ok": True, "old": old, "new": new}
    except StoreError as exc:
        report = {"ok": False, "error": str(exc)}
        # Called off only once the file it read was validated (or trusted) and copied:
        # if it is still that version, it needs no validating again.
        if called_off and before is not None and _version(request["path"]) == before:
            writer.trusted = before
    except OutcomeUnknown as exc:
        report = {"ok": False, "unknown": True, "error": str(exc)}
    except Exception as exc:
        report = {"ok": False, "error": "cannot write users file", "failure": repr(exc)}
    report["trusted"] = writer.trusted
    return report


def _version(path: str) -> Optional[fileio.Signature]:
    """The signature of the file at ``path``, None if there is none to be had."""
    try:
        return fileio.signature(os.stat(path, follow_symlinks=False))
    except OSError:
        return None
