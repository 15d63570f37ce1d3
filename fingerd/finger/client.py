"""A finger client, bounded in time and size: for forwarding and for fingerd-ctl."""

import encodings.idna  # noqa: F401
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

# getaddrinfo encodes host names with the idna codec, which Python imports on
# first use; importing it here, before the worker sheds root, spares the
# unprivileged worker from reading the interpreter's files, which it may not
# be allowed to.

if TYPE_CHECKING:
    from fingerd.config import Address
    from fingerd.finger.dialer import Dialer


#: Most bytes of an answer fingerd-ctl reads.
MAX_ANSWER_BYTES = 64 * 1024


class NoAnswer(Exception):
    """The server could not be reached, or did not answer in time; the text says which."""


def local_host(address: "Address") -> str:
    """Where to reach a listener from this machine: a wildcard means loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)


def exchange(host: str, port: int, data: bytes, timeout: float, max_bytes: int,
             dialer: "Optional[Dialer]" = None) -> tuple[bytes, bool]:
    """``(answer, cut)``: send ``data`` and read until the server closes.

    At most ``max_bytes`` are read (``cut`` tells whether there was more) and
    the whole exchange takes at most ``timeout`` seconds: with a ``dialer``
    (see dialer.py) its name lookup too, without one all but the lookup.
    The connection stays open until the answer is read: a server that asks
    the kernel who owns this end finds it. Raises NoAnswer.
    """
    if dialer is not None:
        return _exchange(lambda: dialer.connect(host, port, timeout), data, timeout, max_bytes)
    return _exchange(lambda: socket.create_connection((host, port), timeout=timeout), data,
                     timeout, max_bytes)


def exchange_unix(path: str, data: bytes, timeout: float,
                  max_bytes: int) -> tuple[bytes, bool]:
    """``exchange`` with the server at the Unix socket ``path``."""
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(path)
        except BaseException:
            s.close()
            raise
        return s
    return _exchange(connect, data, timeout, max_bytes)


def _exchange(connect: Callable[[], socket.socket], data: bytes, timeout: float,
              max_bytes: int) -> tuple[bytes, bool]:
    deadline = time.monotonic() + timeout
    try:
        with connect() as s:
            s.sendall(data)
            chunks: list[bytes] = []
            size = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                s.settimeout(left)
                chunk = s.recv(min(65536, max_bytes + 1 - size))
                if not chunk:
                    return b"".join(chunks), False
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    return b"".join(chunks)[:max_bytes], True
    except socket.timeout:
        raise NoAnswer(f"no answer within {round(timeout, 2):g} s") from None
    except (socket.gaierror, UnicodeError):
        raise NoAnswer("unknown host") from None
    except OSError as exc:
        raise NoAnswer(exc.strerror or str(exc)) from None


def finger(host: str, port: int, line: bytes, timeout: float, max_bytes: int,
           dialer: "Optional[Dialer]" = None) -> tuple[bytes, bool]:
    """``(answer, cut)`` of a finger server for one query line, sent as these bytes: a
    forwarded query is the client's, not a re-encoding of it."""
    return exchange(host, port, line + b"\r\n", timeout, max_bytes, dialer)
