"""What a service is to the serving loop: a description, not a subclass.

aiosmtpd hands one SMTP class a handler object; here one serving loop
(loop.py) is handed a ServiceSpec. Everything that differs between finger,
the setter, the web directory and metrics is a field of it: its share and
deadlines, its framing, its handler and what the handler needs, which
requests it answers on the reading thread, what it tells a client it cannot
serve, and how it meets a client. None of its callables is a method of the
loop, so a reader sees a service whole in the module that builds it.
"""

from __future__ import annotations

from _socket import socket as RawSocket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from fingerd.outcomes import ERROR, REJECT_NOT_ALLOWED
from fingerd.serving.gate import ConnectionGate, Source

#: What a finger client beyond a connection limit is told.
BUSY = b"Server busy, try again later\r\n"

#: Peer address as accept gives it: (host, port, ...) on TCP, empty on a Unix socket.
Peer = Any


class Answer(NamedTuple):
    """What a handler made of one request: the outcome label, the bytes to send, and
    for the metrics and the access log the request's kind, the name it asked for and,
    where the service knows it, the local account that asked."""

    outcome: str
    data: bytes
    kind: str | None = None
    name: str | None = None
    asker: str | None = None


INTERNAL_ERROR = Answer(ERROR, b"Internal error in server\r\n")


def busy_line(_sent: bytes) -> bytes:
    """``busy_answer`` of the line services: ``BUSY``, whatever was sent."""
    return BUSY


def internal_error_line(_request: Any) -> Answer:
    """``internal_error`` of the line services: ``INTERNAL_ERROR``, whatever was asked."""
    return INTERNAL_ERROR


#: ``take_request(buf, eof)``: the complete request once ``buf`` holds it, else None;
#: an empty request when the client sent nothing (see lines.take_lines).
TakeRequest = Callable[[bytes, bool], Any]
#: ``memo(request, client, make)``: an Answer made earlier for the same request, else
#: ``make(request, client)``'s.
Memo = Callable[[Any, Any, Callable[[Any, Any], Answer]], Answer]


def never(_request: Any) -> bool:
    """``waits_outside`` of a service none of whose answers waits on another process."""
    return False


@dataclass(frozen=True)
class ServiceSpec:
    """One service as the loop serves it. Immutable; its callables may keep state of
    their own only where the docstring of the field says which thread owns it."""

    #: How metrics, the access log and the log name it: ``finger``, ``setter``, ...
    name: str
    #: The request handler class (loop.RequestHandler); made once per request as
    #: ``handler(request, client, needs)``, its Answer then in its ``answer``.
    handler: Callable[[Any, Any, Any], Any]
    #: What the handler needs (its dependencies), given to it as socketserver's ``server``.
    needs: Any
    #: The service's share of connections, and the bound per source.
    gate: ConnectionGate
    #: Seconds from accept a request may take to arrive whole.
    request_timeout: float
    #: Seconds from its connect a connection has to send its whole request while the gate
    #: is crowded; never more than ``request_timeout``.
    first_byte_timeout: float
    take_request: TakeRequest
    #: Whether answering a request cannot block, so the reading thread may do it; anything
    #: that may wait (a file, another server, an fsync) goes to the pool. None: never.
    answers_inline: Callable[[Any], bool] | None = None
    #: Whether a request the pool answers may wait long on another process (a finger
    #: server forwarded to, the parent's write, Redis): a service's such requests hold at
    #: most a quarter of the pool's threads (Pool.submit_slow), so that they never keep
    #: all others waiting.
    waits_outside: Callable[[Any], bool] = never
    #: Consulted for answers made on the reading thread, and only by that thread.
    memo: Memo | None = None
    #: Whether to serve a client at this peer at all (behind a PROXY header, the client
    #: it names); None: everyone. A client refused is closed without an answer (allow.py).
    accepts: Callable[[Peer], bool] | None = None
    #: The rejection reason a client ``accepts`` refuses is counted with.
    refusal: str = REJECT_NOT_ALLOWED
    #: What the handler and the access log know the client by, learnt right after accept,
    #: before reading; None: its address.
    identify: Callable[[RawSocket, Peer], Any] | None = None
    #: What ``max_per_source`` counts the client (``identify``'s) against; None: its
    #: address's source (gate.source_of).
    counted_as: Callable[[Any], Source] | None = None
    #: Whether answers are counted in the metrics and the access log.
    counted: bool = True
    #: Whether the kernel may hold a new connection until its first bytes arrive
    #: (TCP_DEFER_ACCEPT), for protocols where the client speaks first.
    defers_accept: bool = False
    #: ``busy_answer(sent)``: what a client beyond a connection limit is told, in the
    #: service's protocol, ``sent`` being what was read from it (after a PROXY header
    #: taken): nothing when refused at accept, what followed the header when refused for
    #: the client it names. Made as it is told, so that an answer may carry the time
    #: (HTTP's Date) and depend on what was sent (HTTP's to HEAD has no body).
    busy_answer: Callable[[bytes], bytes] = busy_line
    #: The Answer to a request whose handler failed, in the service's protocol: made for
    #: that request, so that an answer may depend on it (HTTP's to HEAD has no body).
    internal_error: Callable[[Any], Answer] = internal_error_line
    #: Whether a client may still be sending when it is answered (HTTP: a head past its
    #: bound, a body): then the answer and the FIN go out with a shutdown first, and the
    #: close reads and drops what the client sent meanwhile, since closing with input
    #: unread sends a reset, which destroys the answer.
    lingers: bool = False
    #: Networks whose connections begin with a PROXY protocol header, which names the
    #: client; None where the service does not take one.
    proxy_from: tuple | None = None


def always(_request: Any) -> bool:
    """``answers_inline`` of a service whose every answer is made without waiting."""
    return True
