"""The metrics endpoint: Prometheus text format over a minimal HTTP/1.0 exchange.

It runs on the same bounded machinery as the finger and setter services
(deadline, size limit, connection gate, pool), so a scraper, or anything
else that connects, can hold neither a thread nor unbounded memory.
Only ``GET /metrics`` answers with data; other paths get 404.
"""

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from fingerd.serving.lines import LineTooLong
from fingerd.serving.loop import Answer, RequestHandler, Server

#: Largest HTTP request head read.
MAX_HEAD_BYTES = 8192

METRICS_PATH = "/metrics"

#: Scrapes in progress at once. The endpoint has a limit of its own so that a
#: flood of finger clients, the moment an operator most wants metrics, cannot
#: crowd out the scraper.
METRICS_MAX_CONNECTIONS = 8


def take_head(buf, eof):
    """The request line of an HTTP head once it is complete in ``buf``, else None.

    The head ends at its first blank line (CRLF CRLF or LF LF); one longer than
    MAX_HEAD_BYTES raises LineTooLong, whether it came in one read or many.
    """
    ends = [end for end in (buf.find(b"\r\n\r\n"), buf.find(b"\n\n")) if end >= 0]
    end = min(ends, default=-1)
    if end < 0:
        # The last 3 bytes may yet be the start of the blank line.
        if len(buf) > MAX_HEAD_BYTES + 3:
            raise LineTooLong
        if not eof:
            return None
        end = len(buf)
    if end > MAX_HEAD_BYTES:
        raise LineTooLong
    head = bytes(buf[:end])
    return [head.split(b"\n", 1)[0].rstrip(b"\r")] if head else []


def _response(status, content_type, body):
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class MetricsHandler(RequestHandler):
    def respond(self, lines):
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return Answer("bad_request", _response("400 Bad Request", "text/plain",
                                                   b"bad request\n"))
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return Answer("bad_request", _response("405 Method Not Allowed", "text/plain",
                                                   b"only GET\n"))
        if target.decode("latin-1") != METRICS_PATH:
            return Answer("not_found", _response("404 Not Found", "text/plain", b"not found\n"))
        body = generate_latest(self.server.registry)
        return Answer("ok", _response("200 OK", CONTENT_TYPE_LATEST, body))


class MetricsServer(Server):
    """Serves the registry's metrics at ``/metrics``; scrapes are not counted."""

    service = "metrics"
    handler_class = MetricsHandler
    counted = False
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
        return take_head(buf, eof)
