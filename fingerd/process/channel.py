"""The channel between the root parent and the unprivileged worker.

The worker cannot write the users file (it may be root's, in root's
directory); it asks the parent, as OpenSSH's privilege-separated child asks
its monitor. The parent trusts nothing in a request: the message is
size-bounded JSON, the name and status are validated again with the same
rules as the setter's, and the file written is always the configured one,
never a path the worker names. That one file is all the worker can have
written.

Messages are datagrams on an AF_UNIX SOCK_SEQPACKET socketpair, so each
arrives whole or not at all. A set carries the moment the worker stops
waiting for its answer, on CLOCK_MONOTONIC (which the two processes share):
a parent stopped longer than that reads it late, and must not write what the
setter's client was told failed.

Nor does the parent ever wait on the worker (``ParentEnd``): its end is
non-blocking, replies the worker does not read wait in a short queue, and a
worker that lets that queue fill, or sends what no worker of ours sends, is
told so by ``WorkerMisbehaved``, for the parent to kill it.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fingerd.limits import REPLY_TIMEOUT
from fingerd.users.editing import OutcomeUnknown, StoreError
from fingerd.users.usersfile import is_valid_name, status_problem

if TYPE_CHECKING:
    from fingerd.users.fileio import Signature

MAX_MESSAGE_BYTES = 4096
#: What a worker says: it is ready, it lives, set this status, it accepts no more.
OPS = ("ready", "alive", "set", "closed")
#: Most characters of what a ready message says about the users file: a line, whose
#: JSON (12 bytes for a character outside the BMP) fits in one message.
MAX_PROBLEM_CHARS = 300

#: Replies the parent keeps for a worker whose socket buffer is full (some
#: hundred small replies) before it gives up on it. The worker has at most
#: one request waiting (MonitorClient holds its lock until the answer), so
#: it never has more than one reply to read.
MAX_QUEUED_REPLIES = 32


def channel() -> tuple[socket.socket, socket.socket]:
    """``(parent_end, worker_end)``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class MonitorClient:
    """The worker's end. ``write_status`` fits UserStore's ``writer``; thread-safe."""

    def __init__(self, sock: socket.socket, timeout: float = REPLY_TIMEOUT) -> None:
        self._sock = sock
        self._sock.settimeout(timeout)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def ready(self, users_problem: str | None = None) -> None:
        """Tell the parent the worker serves; a reload's worker adds what was wrong with
        its users file, if anything, for the reload's outcome."""
        message = {"op": "ready"} if users_problem is None else {
            "op": "ready", "users": users_problem[:MAX_PROBLEM_CHARS]}
        with self._lock:
            self._sock.send(json.dumps(message).encode())

    def alive(self, served: int) -> None:
        """Tell the parent the worker lives and has answered ``served`` requests so far.

        Without the lock, which a set holds while it waits for its reply: a
        datagram is sent whole or not at all. Never waits: a parent that does not
        read misses the beat, which is the parent's problem to judge.
        """
        try:
            self._sock.send(json.dumps({"op": "alive", "served": served}).encode(),
                            socket.MSG_DONTWAIT)
        except OSError:
            pass

    def first_answer(self) -> None:
        """Tell the parent at once that the worker answered a request, as a heartbeat
        counting it: the restart backoff spares a worker that served, and one killed
        before its next heartbeat served all the same. Called once, by the thread that
        answered, before its client's connection is closed (Metrics' on_first_answer)."""
        self.alive(1)

    def not_accepting(self) -> None:
        """Tell the parent the worker accepts no more (it stops): a reload's new worker
        accepts from then on. Without the lock, as ``alive``."""
        try:
            self._sock.send(b'{"op": "closed"}', socket.MSG_DONTWAIT)
        except OSError:
            pass

    def write_status(self, path: str, name: str, status: str, by: str
                     ) -> tuple[Signature | None, Signature | None]:
        """Ask the parent to set the status, which it logs as made ``by`` this client
        once written; returns its signatures. Raises StoreError
        when the parent refused, or never had the request; OutcomeUnknown when it took
        the request and no answer came (it died, or did not answer in time), since the
        file may have been written all the same, or when it says so (unknown_reply)."""
        with self._lock:
            request_id = next(self._ids)
            message = json.dumps({"op": "set", "id": request_id, "name": name,
                                  "status": status, "by": by,
                                  "deadline": time.monotonic() + self._timeout}).encode()
            try:
                self._sock.send(message)
            except OSError as exc:
                raise StoreError(f"the parent process cannot be reached: {exc}") from None
            try:
                while True:
                    reply = json.loads(self._sock.recv(MAX_MESSAGE_BYTES) or b"null")
                    if reply is None:
                        raise OutcomeUnknown("the parent process is gone")
                    if reply.get("id") == request_id:
                        break
            except (OSError, ValueError) as exc:
                raise OutcomeUnknown(f"the parent process did not answer: {exc}") from None
        if reply.get("unknown"):
            raise OutcomeUnknown(reply.get("error", "outcome unknown"))
        if not reply.get("ok"):
            raise StoreError(reply.get("error", "refused"))
        return signature(reply["old"]), signature(reply["new"])


def signature(value: Sequence[int] | None) -> Signature | None:
    """A file's signature as a message carries it (a list, or null) made a tuple again;
    ValueError if the list is not one."""
    if value is None:
        return None
    device, inode, size, mtime, ctime = value
    return device, inode, size, mtime, ctime


#: A JSON string, escapes and all, to the end of the text when it is not closed: what it
#: holds is text, not structure. Its closing quote is optional, so that a match never
#: goes back, and the strings of a text are taken in one pass.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
#: All but what opens or closes an array or an object.
_NOT_BRACKETS = re.compile(r"[^][{}]+")
#: How each bracket changes the depth.
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
#: Levels of arrays and objects a worker's JSON may nest: its object, and a value
#: of one more a worker of another version might add.
MAX_NESTING = 2


def loads_shallow(data: bytes) -> Any:
    """``data``, UTF-8 JSON, as json.loads reads it; ValueError for arrays and objects
    nested deeper than MAX_NESTING, or anything json refuses.

    What a worker sends, on this channel and its log pipe, is one object of
    scalars, and deeper nesting is refused before json sees it: json's decoder
    recurses once a level, and Python 3.9 can abort the whole process ("Cannot
    recover from stack overflow") instead of raising RecursionError when a
    decode nests past the recursion limit. Read as UTF-8 only: json's own guess
    of UTF-16 or 32 would read brackets this scan takes as text. The scan takes
    time in proportion to the text, whatever it holds, in a few passes of C code.
    """
    text = data.decode("utf-8")
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    if max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)),
           default=0) > MAX_NESTING:
        raise ValueError(f"arrays and objects nested deeper than {MAX_NESTING}")
    return json.loads(text)


def parse_message(data: bytes) -> dict[str, Any] | None:
    """The request in a datagram from the worker as a dict, or None if malformed.

    Never raises: deep nesting (``loads_shallow``), and text that no UTF-8 file can hold
    (a lone surrogate, which JSON can carry), are malformed too.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = loads_shallow(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("op") not in OPS:
        return None
    if message["op"] == "ready" and not (
            message.get("users") is None or _utf8(message["users"])):
        return None
    if message["op"] == "alive" and not (
            type(message.get("served")) is int and message["served"] >= 0):
        return None
    if message["op"] == "set" and not (
            isinstance(message.get("id"), int) and _utf8(message.get("name"))
            and _utf8(message.get("status")) and _utf8(message.get("by"))
            and _finite(message.get("deadline"))):
        return None
    return message


def _finite(value: object) -> bool:
    """Whether ``value`` is a finite number, as a deadline is (JSON has NaN and Infinity)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _utf8(value: object) -> bool:
    """Whether ``value`` is text that UTF-8 can encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def set_problem(message: dict[str, Any]) -> str | None:
    """Why the set request ``message`` is refused before any write, or None."""
    if not is_valid_name(message["name"]):
        return "invalid user name"
    return status_problem(message["status"])


def set_reply(request_id: int, old: Sequence[int] | None, new: Sequence[int]) -> bytes:
    """The reply to a set carried out: the file's signatures before and after."""
    return json.dumps({"id": request_id, "ok": True, "old": old, "new": new}).encode()


def error_reply(request_id: int, error: str) -> bytes:
    """The reply to a set refused or failed, with the reason the setter's client is told."""
    return json.dumps({"id": request_id, "ok": False, "error": error}).encode()


def unknown_reply(request_id: int, why: str) -> bytes:
    """The reply to a set whose outcome is unknown (its file is in place, not known
    durable; or its writer ended as it renamed the file into place): the setter's
    client is told nothing, the log ``why``."""
    return json.dumps({"id": request_id, "ok": False, "unknown": True, "error": why}).encode()


class WorkerMisbehaved(Exception):
    """The worker did what no worker of ours does; the message says what, for the log."""


class ParentEnd:
    """The parent's end of the channel: never blocks, holds a bounded queue of replies.

    ``receive`` and ``flush`` are for the parent's selector, which watches
    for writing only while ``waiting`` (replies the socket did not take).
    """

    def __init__(self, sock: socket.socket, max_replies: int = MAX_QUEUED_REPLIES) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_replies = max_replies
        self._replies: collections.deque[bytes] = collections.deque()
        #: Whether the worker has said it serves: it says so once.
        self.said_ready = False
        #: What it said, when ready, was wrong with its users file (unchecked text).
        self.users_problem: str | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def waiting(self) -> bool:
        """True while replies wait for room in the worker's socket buffer."""
        return bool(self._replies)

    def receive(self) -> bytes | None:
        """The next datagram, None when none has come, b"" once the worker's end is closed."""
        try:
            return self.sock.recv(MAX_MESSAGE_BYTES + 1)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def send(self, reply: bytes) -> None:
        """Send ``reply`` or queue it; raise WorkerMisbehaved when the queue is full."""
        if len(self._replies) >= self.max_replies:
            raise WorkerMisbehaved(f"stopped reading its channel ({len(self._replies)} "
                                   f"replies waiting)")
        self._replies.append(reply)
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now, oldest first."""
        while self._replies:
            try:
                self.sock.send(self._replies[0])
            except BlockingIOError:
                return
            except OSError:
                # The worker is gone: its end is read as closed, and its exit reaped.
                self._replies.clear()
                return
            self._replies.popleft()

    def close(self) -> None:
        self._replies.clear()
        self.sock.close()
