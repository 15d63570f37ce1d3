"""The metrics endpoint: Prometheus text format over a minimal HTTP/1.0 exchange.

It runs on the same bounded machinery as the finger and setter services
(deadline, size limit, connection gate, pool), so a scraper, or anything
else that connects, can hold neither a thread nor unbounded memory.
Only ``GET /metrics`` answers with data, and ``HEAD /metrics`` with its head;
other paths get 404, other methods 405, as on the web directory.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from fingerd.outcomes import ERROR
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.http_head import Head, HeadError, take_request
from fingerd.serving.http_response import (
    ALLOW,
    METHODS,
    Framed,
    before_the_request,
    dated,
    framed,
    to_method,
)
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import Answer, ServiceSpec, always

METRICS_PATH = "/metrics"

#: Scrapes in progress at once. The endpoint has a limit of its own so that a
#: flood of finger clients, the moment an operator most wants metrics, cannot
#: crowd out the scraper.
METRICS_MAX_CONNECTIONS = 8


def _framed(status: int, content_type: str, body: bytes, headers: tuple = (),
            with_body: bool = True) -> Framed:
    """A response in the endpoint's minimal HTTP/1.0, but its Date: type, length,
    ``headers``."""
    return framed(status, content_type, body, headers, with_body, version="HTTP/1.0",
                  always=())


class MetricsHandler(RequestHandler):
    def respond(self, head: Head | HeadError, registry: CollectorRegistry) -> Answer:
        outcome, parts = _answer(head, registry)
        return Answer(outcome, dated(parts))


def _answer(head: Head | HeadError, registry: CollectorRegistry) -> tuple[str, Framed]:
    """The outcome of ``head`` and its answer but the Date."""
    if isinstance(head, HeadError):
        return "bad_request", _framed(head.status, "text/plain", f"{head}\n".encode(),
                                      with_body=head.method != "HEAD")
    if head.method not in METHODS:
        return "bad_request", _framed(405, "text/plain", b"only GET and HEAD\n", (ALLOW,))
    with_body = head.method == "GET"
    if head.path != METRICS_PATH:
        return "not_found", _framed(404, "text/plain", b"not found\n", with_body=with_body)
    body = generate_latest(registry)
    return "ok", _framed(200, CONTENT_TYPE_LATEST, body, with_body=with_body)


#: ``busy_answer(sent)``: beyond its connection limit a scraper is told so in HTTP, never
#: the finger line; refused at accept, it has sent nothing yet (``before_the_request``).
busy_answer = before_the_request(503, "text/plain", b"busy\n", ("Retry-After: 1",),
                                 version="HTTP/1.0", always=())


_INTERNAL_ERROR = to_method(500, "text/plain", b"internal error\n", version="HTTP/1.0",
                            always=())


def internal_error(head: Head | HeadError) -> Answer:
    """A scrape whose answer failed is told so in HTTP, never the finger line."""
    return Answer(ERROR, _INTERNAL_ERROR(head.method))


def metrics_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                    registry: CollectorRegistry) -> ServiceSpec:
    """Serves the registry's metrics at ``/metrics``; scrapes are not counted.

    A scrape reads memory and /proc, never waiting on a client or a remote host:
    answered on the endpoint's own thread, it never queues behind the pool's work
    (forwarding, account lookups, sets), when an operator most wants to see it.
    """
    return ServiceSpec("metrics", MetricsHandler, registry, gate, request_timeout,
                       first_byte_timeout, take_request, answers_inline=always, counted=False,
                       busy_answer=busy_answer, internal_error=internal_error, lingers=True)
