"""The channel between the root parent and the unprivileged worker.

The worker cannot write the users file (it may be root's, in root's
directory); it asks the parent, as OpenSSH's privilege-separated child asks
its monitor. The parent trusts nothing in a request: the message is
size-bounded JSON, the name and status are validated again with the same
rules as the setter's, and the file written is always the configured one,
never a path the worker names. That one file is all the worker can have
written.

Messages are datagrams on an AF_UNIX SOCK_SEQPACKET socketpair, so each
arrives whole or not at all.
"""

import itertools
import json
import socket
import threading

from fingerd.users.editing import StoreError, write_status
from fingerd.users.usersfile import is_valid_name, status_problem

MAX_MESSAGE_BYTES = 4096

#: Seconds the worker waits for the parent to write the users file.
REPLY_TIMEOUT = 10.0


def channel():
    """``(parent_end, worker_end)``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class MonitorClient:
    """The worker's end. ``write_status`` fits UserStore's ``writer``; thread-safe."""

    def __init__(self, sock, timeout=REPLY_TIMEOUT):
        self._sock = sock
        self._sock.settimeout(timeout)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def ready(self):
        """Tell the parent the worker serves."""
        with self._lock:
            self._sock.send(json.dumps({"op": "ready"}).encode())

    def write_status(self, path, name, status):
        """Ask the parent to set the status; returns its signatures or raises StoreError."""
        with self._lock:
            request_id = next(self._ids)
            message = json.dumps({"op": "set", "id": request_id, "name": name,
                                  "status": status}).encode()
            try:
                self._sock.send(message)
                while True:
                    reply = json.loads(self._sock.recv(MAX_MESSAGE_BYTES) or b"null")
                    if reply is None:
                        raise StoreError("the parent process is gone")
                    if reply.get("id") == request_id:
                        break
            except (OSError, ValueError) as exc:
                raise StoreError(f"the parent process did not answer: {exc}") from None
        if not reply.get("ok"):
            raise StoreError(reply.get("error", "refused"))
        return _signature(reply["old"]), _signature(reply["new"])


def _signature(value):
    return tuple(value) if value is not None else None


def parse_message(data):
    """The request in a datagram from the worker as a dict, or None if malformed.

    Never raises: nesting deeper than json's recursion limit, and text that no
    UTF-8 file can hold (a lone surrogate, which JSON can carry), are malformed too.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("op") not in ("ready", "set"):
        return None
    if message["op"] == "set" and not (
            isinstance(message.get("id"), int) and _utf8(message.get("name"))
            and _utf8(message.get("status"))):
        return None
    return message


def _utf8(value):
    """Whether ``value`` is text that UTF-8 can encode."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def answer_set(message, users_file):
    """Carry out a validated set request on the configured users file; the reply bytes."""
    name, status = message["name"], message["status"]
    reply = {"id": message["id"], "ok": False}
    problem = None if is_valid_name(name) else "invalid user name"
    problem = problem or status_problem(status)
    if problem:
        reply["error"] = problem
    else:
        try:
            old, new = write_status(users_file, name, status)
            reply.update(ok=True, old=old, new=new)
        except StoreError as exc:
            reply["error"] = str(exc)
    return json.dumps(reply).encode()
