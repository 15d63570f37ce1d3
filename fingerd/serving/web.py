"""The web directory service: HTTP requests answered from the finger directory.

One request a connection, GET and HEAD, its head read by http_head; what a
path answers is the Site's (finger/web.py), and this module adds HTTP:
errors for what is not a request the site serves, 405 for other methods,
the entity tag and ``If-None-Match``, caching, and the headers every answer
carries (http_response).
"""

from email.utils import formatdate

from fingerd.limits import WEB_MAX_AGE_SECONDS
from fingerd.outcomes import BAD_REQUEST, ERROR, NOT_MODIFIED
from fingerd.serving.http_head import HeadError, take_request
from fingerd.serving.http_response import NO_STORE, TEXT, entity_tag, none_match, response
from fingerd.serving.loop import Answer, RequestHandler, Server

#: The methods served; any other is answered 405.
METHODS = ("GET", "HEAD")

_CACHE = f"Cache-Control: max-age={WEB_MAX_AGE_SECONDS}"


class WebHandler(RequestHandler):
    def respond(self, head):
        if isinstance(head, HeadError):
            return Answer(BAD_REQUEST, response(head.status, TEXT, f"{head}\n".encode(),
                                                (NO_STORE,)))
        date = "Date: " + formatdate(usegmt=True)
        if head.method not in METHODS:
            return Answer(BAD_REQUEST, response(
                405, TEXT, b"Only GET and HEAD are served here.\n",
                (date, "Allow: " + ", ".join(METHODS), NO_STORE)))
        reply = self.server.site.answer(head.path, head.query)
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


class WebServer(Server):
    """The web directory: answers from the Site ``site``; with ``lookups_block`` (system
    accounts) an answer that asks the directory goes to the pool, as finger's does."""

    service = "web"
    handler_class = WebHandler
    defers_accept = True
    lingers = True
    busy_answer = response(503, TEXT, b"Server busy, try again later\n",
                           ("Retry-After: 1", NO_STORE))
    internal_error = Answer(ERROR, response(500, TEXT, b"Internal error in server\n",
                                            (NO_STORE,)))

    def __init__(self, socks, context, site, lookups_block=False, proxy_from=None):
        super().__init__(socks, context)
        self.site = site
        self.lookups_block = lookups_block
        self.proxy_from = proxy_from

    def take_request(self, buf, eof):
        return take_request(buf, eof)

    def answers_inline(self, head):
        return not self.lookups_block or isinstance(head, HeadError) or \
            not self.site.reads_directory(head.path)
