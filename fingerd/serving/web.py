"""The web directory service: HTTP requests answered from the finger directory.

One request a connection, GET and HEAD, its head read by http_head; what a
path answers is the Site's (finger/web.py), and this module adds HTTP:
errors for what is not a request the site serves, 405 for other methods,
the entity tag and ``If-None-Match``, caching, and the headers every answer
carries (http_response).

A reply in HTTP is Prepared once: its entity tag and the bytes of its
answer to GET, all but the Date field. Where the directory is the users
file alone the site's replies are kept so, per users table and request
target, as finger keeps its answers (AnswerCache): a request then costs
reading its head, a lookup, the Date of the second and one join.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from fingerd.finger.web import Reply, Site
from fingerd.limits import MAX_CACHED_ANSWER_BYTES, WEB_MAX_AGE_SECONDS
from fingerd.outcomes import BAD_REQUEST, ERROR, NOT_MODIFIED
from fingerd.serving.finger import AnswerCache
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.http_head import Head, HeadError, take_request
from fingerd.serving.http_response import (
    ALLOW,
    METHODS,
    NO_STORE,
    TEXT,
    Framed,
    before_the_request,
    dated,
    entity_tag,
    framed,
    none_match,
    to_method,
)
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import Answer, ServiceSpec, always

_CACHE = f"Cache-Control: max-age={WEB_MAX_AGE_SECONDS}"

_NOT_ALLOWED = framed(405, TEXT, b"Only GET and HEAD are served here.\n", (ALLOW, NO_STORE))


class Prepared(NamedTuple):
    """A Reply in HTTP: its entity tag (None for a redirect, which has none) and its
    answer to GET."""

    reply: Reply
    tag: str | None
    get: Framed


def _framed(reply: Reply, tag: str | None, with_body: bool = True,
            not_modified: bool = False) -> Framed:
    """The answer to ``reply`` but its Date: a GET's, a HEAD's (no body), or a 304's."""
    if reply.location is not None:
        return framed(303, TEXT, b"", (f"Location: {reply.location}", NO_STORE), with_body)
    headers = (f"ETag: {tag}", _CACHE)
    if not_modified:
        return framed(304, headers=headers)
    return framed(reply.status, reply.content_type, reply.body, headers, with_body)


def prepared(reply: Reply) -> Prepared:
    """``reply`` in HTTP: the entity tag of its body, and its answer to GET."""
    tag = None if reply.location is not None else entity_tag(reply.body)
    return Prepared(reply, tag, _framed(reply, tag))


def prepared_size(target: tuple[str, str], made: Prepared) -> int:
    """What a kept Prepared weighs against the cache's bound: its target, its reply's body
    and its bytes."""
    return (len(target[0]) + len(target[1]) + len(made.reply.body) + len(made.get.before)
            + len(made.get.after))


def answered(head: Head, made: Prepared) -> Answer:
    """The Answer to a GET or HEAD ``head`` whose target the site answers with ``made``: a
    GET its bytes, a HEAD the same without body, and a 200 whose tag the client
    names in ``If-None-Match`` a 304."""
    reply, tag = made.reply, made.tag
    if tag is not None and reply.status == 200 and \
            none_match(head.field("if-none-match"), tag):
        return Answer(NOT_MODIFIED, dated(_framed(reply, tag, not_modified=True)),
                      reply.kind, reply.name)
    parts = made.get if head.method == "GET" else _framed(reply, tag, with_body=False)
    return Answer(reply.outcome, dated(parts), reply.kind, reply.name)


class WebHandler(RequestHandler):
    def respond(self, head: Head | HeadError, site: Site) -> Answer:
        if isinstance(head, HeadError):
            return Answer(BAD_REQUEST, dated(framed(
                head.status, TEXT, f"{head}\n".encode(), (NO_STORE,), head.method != "HEAD")))
        if head.method not in METHODS:
            return Answer(BAD_REQUEST, dated(_NOT_ALLOWED))
        return answered(head, prepared(site.answer(head.path, head.query)))


class PreparedReplies:
    """The web service's memo where its replies are kept: a GET or HEAD is answered from
    the Prepared reply made for its target from the current users table (``cache``,
    owned by the loop's reading thread), anything else by the handler."""

    def __init__(self, site: Site, cache: AnswerCache) -> None:
        self._site = site
        self._cache = cache

    def __call__(self, head: Head | HeadError, client: Any,
                 make: Callable[[Any, Any], Answer]) -> Answer:
        if isinstance(head, HeadError) or head.method not in METHODS:
            return make(head, client)
        return answered(head, self._lookup(head.path, head.query))

    def _lookup(self, path: str, query: str) -> Prepared:
        cache = self._cache
        return cache.get(cache.current(), (path, query), self._prepared, path, query)

    def _prepared(self, path: str, query: str) -> Prepared:
        return prepared(self._site.answer(path, query))


#: ``busy_answer(sent)``: what a client beyond a connection limit is told, ``sent`` being
#: what was read from it: nothing when refused at accept, the first bytes of its request
#: when refused after its PROXY header (``before_the_request``).
busy_answer = before_the_request(503, TEXT, b"Server busy, try again later\n",
                                 ("Retry-After: 1", NO_STORE))
_INTERNAL_ERROR = to_method(500, TEXT, b"Internal error in server\n", (NO_STORE,))


def internal_error(request: Head | HeadError) -> Answer:
    """The answer to ``request`` when making its answer failed."""
    return Answer(ERROR, _INTERNAL_ERROR(request.method))


def asks_no_directory(site: Site, head: Head | HeadError) -> bool:
    """Whether answering ``head`` leaves the directory alone, so it cannot wait."""
    return isinstance(head, HeadError) or not site.reads_directory(head.path)


def web_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                site: Site, lookups_block: bool = False,
                users: Callable[[], Any] | None = None,
                proxy_from: tuple | None = None) -> ServiceSpec:
    """The web directory: answers from the Site ``site``; with ``lookups_block`` (system
    accounts) an answer that asks the directory goes to the pool, as finger's does,
    and none is kept; else ``users()``, the store's current table, keys the kept ones."""
    inline = functools.partial(asks_no_directory, site) if lookups_block else always
    memo = None if lookups_block or users is None else PreparedReplies(
        site, AnswerCache(users, MAX_CACHED_ANSWER_BYTES, prepared_size))
    return ServiceSpec("web", WebHandler, site, gate, request_timeout, first_byte_timeout,
                       take_request, answers_inline=inline, memo=memo, defers_accept=True,
                       busy_answer=busy_answer, internal_error=internal_error, lingers=True,
                       proxy_from=proxy_from)
