"""The web directory service: HTTP requests answered from the finger directory.

One request a connection, GET and HEAD, its head read by http_head; what a
path answers is the Site's (finger/web.py), and this module adds HTTP:
errors for what is not a request the site serves, 405 for other methods,
the entity tag and ``If-None-Match``, caching, and the headers every answer
carries (http_response).
"""

from __future__ import annotations

import functools
import time
from email.utils import formatdate

from fingerd.each_second import EachSecond
from fingerd.finger.web import Site
from fingerd.limits import WEB_MAX_AGE_SECONDS
from fingerd.outcomes import BAD_REQUEST, ERROR, NOT_MODIFIED
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.http_head import Head, HeadError, take_request
from fingerd.serving.http_response import (
    NO_STORE,
    TEXT,
    entity_tag,
    none_match,
    response,
)
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import Answer, ServiceSpec, always

#: The methods served; any other is answered 405.
METHODS = ("GET", "HEAD")

_CACHE = f"Cache-Control: max-age={WEB_MAX_AGE_SECONDS}"


#: The Date field, made once a second (its resolution) rather than per request.
_DATES = EachSecond(lambda second: "Date: " + formatdate(second, usegmt=True))


class WebHandler(RequestHandler):
    def respond(self, head: Head | HeadError, site: Site) -> Answer:
        if isinstance(head, HeadError):
            return Answer(BAD_REQUEST, response(head.status, TEXT, f"{head}\n".encode(),
                                                (NO_STORE,)))
        date = _DATES.at(int(time.time())).text
        if head.method not in METHODS:
            return Answer(BAD_REQUEST, response(
                405, TEXT, b"Only GET and HEAD are served here.\n",
                (date, "Allow: " + ", ".join(METHODS), NO_STORE)))
        reply = site.answer(head.path, head.query)
        with_body = head.method == "GET"
        if reply.location is not None:
            data = response(303, TEXT, b"", (date, f"Location: {reply.location}", NO_STORE),
                            with_body)
            return Answer(reply.outcome, data, reply.kind, reply.name)
        tag = entity_tag(reply.body)
        headers = (date, f"ETag: {tag}", _CACHE)
        if reply.status == 200 and none_match(head.field("if-none-match"), tag):
            return Answer(NOT_MODIFIED, response(304, headers=headers), reply.kind, reply.name)
        return Answer(reply.outcome, response(reply.status, reply.content_type, reply.body,
                                              headers, with_body), reply.kind, reply.name)


BUSY_ANSWER = response(503, TEXT, b"Server busy, try again later\n", ("Retry-After: 1", NO_STORE))
INTERNAL_ERROR = Answer(ERROR, response(500, TEXT, b"Internal error in server\n", (NO_STORE,)))


def asks_no_directory(site: Site, head: Head | HeadError) -> bool:
    """Whether answering ``head`` leaves the directory alone, so it cannot wait."""
    return isinstance(head, HeadError) or not site.reads_directory(head.path)


def web_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                site: Site, lookups_block: bool = False,
                proxy_from: tuple | None = None) -> ServiceSpec:
    """The web directory: answers from the Site ``site``; with ``lookups_block`` (system
    accounts) an answer that asks the directory goes to the pool, as finger's does."""
    inline = functools.partial(asks_no_directory, site) if lookups_block else always
    return ServiceSpec("web", WebHandler, site, gate, request_timeout, first_byte_timeout,
                       take_request, answers_inline=inline, defers_accept=True,
                       busy_answer=BUSY_ANSWER, internal_error=INTERNAL_ERROR, lingers=True,
                       proxy_from=proxy_from)
