"""The metrics endpoint: Prometheus text format over a minimal HTTP/1.0 exchange.

It runs on the same bounded machinery as the finger and setter services
(deadline, size limit, connection gate, pool), so a scraper, or anything
else that connects, can hold neither a thread nor unbounded memory.
Only ``GET /metrics`` answers with data; other paths get 404.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from fingerd.serving.gate import ConnectionGate
from fingerd.serving.http_head import REASONS, Head, HeadError, take_request
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import Answer, ServiceSpec, always

METRICS_PATH = "/metrics"

#: Scrapes in progress at once. The endpoint has a limit of its own so that a
#: flood of finger clients, the moment an operator most wants metrics, cannot
#: crowd out the scraper.
METRICS_MAX_CONNECTIONS = 8


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class MetricsHandler(RequestHandler):
    def respond(self, head: Head | HeadError, registry: CollectorRegistry) -> Answer:
        if isinstance(head, HeadError):
            return Answer("bad_request", _response(f"{head.status} {REASONS[head.status]}",
                                                   "text/plain", f"{head}\n".encode()))
        if head.method != "GET":
            return Answer("bad_request", _response("405 Method Not Allowed", "text/plain",
                                                   b"only GET\n"))
        if head.path != METRICS_PATH:
            return Answer("not_found", _response("404 Not Found", "text/plain", b"not found\n"))
        body = generate_latest(registry)
        return Answer("ok", _response("200 OK", CONTENT_TYPE_LATEST, body))


#: Beyond its connection limit a scraper is told so in HTTP, never the finger line.
BUSY_ANSWER = (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n"
               b"\r\nbusy\n")


def metrics_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                    registry: CollectorRegistry) -> ServiceSpec:
    """Serves the registry's metrics at ``/metrics``; scrapes are not counted.

    A scrape reads memory and /proc, never waiting on a client or a remote host:
    answered on the endpoint's own thread, it never queues behind the pool's work
    (forwarding, account lookups, sets), when an operator most wants to see it.
    """
    return ServiceSpec("metrics", MetricsHandler, registry, gate, request_timeout,
                       first_byte_timeout, take_request, answers_inline=always, counted=False,
                       busy_answer=BUSY_ANSWER, lingers=True)
