"""The metrics endpoint: Prometheus text format over a minimal HTTP/1.0 exchange.

It runs on the same bounded machinery as the finger and setter services
(deadline, size limit, connection gate, pool), so a scraper, or anything
else that connects, can hold neither a thread nor unbounded memory.
Only ``GET /metrics`` answers with data; other paths get 404.
"""

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from fingerd.serving.http_head import REASONS, HeadError, take_request
from fingerd.serving.loop import Answer, RequestHandler, Server

METRICS_PATH = "/metrics"

#: Scrapes in progress at once. The endpoint has a limit of its own so that a
#: flood of finger clients, the moment an operator most wants metrics, cannot
#: crowd out the scraper.
METRICS_MAX_CONNECTIONS = 8


def _response(status, content_type, body):
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class MetricsHandler(RequestHandler):
    def respond(self, head):
        if isinstance(head, HeadError):
            return Answer("bad_request", _response(f"{head.status} {REASONS[head.status]}",
                                                   "text/plain", f"{head}\n".encode()))
        if head.method != "GET":
            return Answer("bad_request", _response("405 Method Not Allowed", "text/plain",
                                                   b"only GET\n"))
        if head.path != METRICS_PATH:
            return Answer("not_found", _response("404 Not Found", "text/plain", b"not found\n"))
        body = generate_latest(self.server.registry)
        return Answer("ok", _response("200 OK", CONTENT_TYPE_LATEST, body))


class MetricsServer(Server):
    """Serves the registry's metrics at ``/metrics``; scrapes are not counted."""

    service = "metrics"
    handler_class = MetricsHandler
    counted = False
    lingers = True
    #: Beyond its connection limit a scraper is told so in HTTP, never the finger line.
    busy_answer = (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"
                   b"Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n"
                   b"\r\nbusy\n")

    def __init__(self, socks, context, registry):
        super().__init__(socks, context)
        self.registry = registry

    def answers_inline(self, request):
        """A scrape reads memory and /proc, never waiting on a client or a remote host:
        answered on the endpoint's own thread, it never queues behind the pool's work
        (forwarding, account lookups, sets), when an operator most wants to see it."""
        return True

    def take_request(self, buf, eof):
        return take_request(buf, eof)
