"""HTTP responses, of the web directory and of the metrics endpoint: no I/O.

Every response closes its connection and carries the Date it was sent
(RFC 9110 6.6.1: an origin server with a clock sends one). The web
directory's are HTTP/1.1 and carry the headers that keep a browser from
reading more into it than they say: no type sniffing, no script, no
referrer sent on. Its validators are entity tags of the body, so an answer
that has not changed is confirmed with 304 and no body. The metrics
endpoint's are HTTP/1.0 with type, length, Date and what their status needs
(Allow, Retry-After): a scraper reads text.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from typing import NamedTuple

from fingerd.each_second import EachSecond
from fingerd.serving.http_head import REASONS, request_method

#: What every response says besides its own headers: take the type as given, run no
#: script and load nothing from elsewhere, send no referrer, be no one's frame.
SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff",
    ("Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self'; "
     "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Referrer-Policy: no-referrer",
)

#: The methods the web directory and the metrics endpoint serve; any other is answered
#: 405 with ``ALLOW`` (RFC 9110 15.5.6). HEAD gets the head GET would, without its body.
METHODS = ("GET", "HEAD")
ALLOW = "Allow: " + ", ".join(METHODS)

NO_STORE = "Cache-Control: no-store"
TEXT = "text/plain; charset=utf-8"

#: The Date field and its CRLF, made once a second (its resolution) rather than per request.
_DATES = EachSecond(lambda second: f"Date: {formatdate(second, usegmt=True)}\r\n")


class Framed(NamedTuple):
    """A response in two parts, made once: the Date field, made as it is sent, goes
    between them (``dated``)."""

    before: bytes
    after: bytes


def dated(parts: Framed, clock: Callable[[], float] = time.time) -> bytes:
    """The bytes of the response ``parts`` as sent now: the Date field of this second (by
    ``clock``) between them."""
    return parts.before + _DATES.at(int(clock())).text.encode("ascii") + parts.after


def framed(status: int, content_type: str | None = None, body: bytes = b"",
           headers: Sequence[str] = (), with_body: bool = True, version: str = "HTTP/1.1",
           always: Sequence[str] = SECURITY_HEADERS) -> Framed:
    """A response but its Date, in two parts cut after its type and length, where the
    Date goes; ``with_body`` false for HEAD, which gets the same head. ``headers`` come
    after type, length and Date, then ``always``, what every response of the service
    says.

    A 304 has neither type nor length: it stands for the answer the client has.
    """
    lines = [f"{version} {status} {REASONS[status]}\r\n"]
    if status != 304:
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n")
    rest = [f"{field}\r\n" for field in (*headers, *always)]
    rest.append("Connection: close\r\n\r\n")
    after = "".join(rest).encode("latin-1")
    return Framed("".join(lines).encode("latin-1"),
                  after + body if with_body and status != 304 else after)


def to_method(status: int, content_type: str, body: bytes, headers: Sequence[str] = (),
              version: str = "HTTP/1.1",
              always: Sequence[str] = SECURITY_HEADERS) -> Callable[[str | None], bytes]:
    """``answer(method)``: a response made once, whatever was asked (500 when making the
    answer failed), dated as it is sent; to a HEAD without its body (RFC 9110 9.3.2),
    to any other method, or to one not known, with it."""
    to_any = framed(status, content_type, body, headers, True, version, always)
    to_head = framed(status, content_type, body, headers, False, version, always)

    def answer(method: str | None) -> bytes:
        return dated(to_head if method == "HEAD" else to_any)
    return answer


def before_the_request(status: int, content_type: str, body: bytes,
                       headers: Sequence[str] = (), version: str = "HTTP/1.1",
                       always: Sequence[str] = SECURITY_HEADERS) -> Callable[[bytes], bytes]:
    """``answer(sent)``: a response made before the request was read whole (503 to a
    client beyond a connection limit), dated as it is sent; ``sent`` is what the client
    had sent by then.

    Once ``sent`` tells a HEAD (``request_method``: its request line begins ``HEAD ``),
    the answer has no body (RFC 9110 9.3.2). With nothing read yet, refused as it is
    accepted, the method is unknown, and the answer has its body: the answer to any
    method but HEAD carries one.
    """
    answer = to_method(status, content_type, body, headers, version, always)
    return lambda sent: answer(request_method(sent))


def entity_tag(body: bytes) -> str:
    """A strong entity tag of ``body``: the same for the same bytes, in any worker."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def none_match(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match field value matches ``tag`` (weak comparison, RFC 9110
    13.1.2): ``*`` or a listed tag with or without ``W/``."""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False
