"""The metric families of CONTRACT section 7, in a registry of their own.

Each Metrics object owns its registry, so tests and the worker never share
global state. Label values come from small fixed sets declared by the
services; a user name or an address is never a label value.
"""

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info,
                               ProcessCollector, disable_created_metrics)

from fingerd import __version__

# A ``_created`` series beside every counter doubles the output for a value
# that process_start_time_seconds already gives.
disable_created_metrics()

#: Buckets for a finger answer: most take well under a millisecond.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Why a connection was closed before it made a request.
REJECT_BUSY = "max_connections"
REJECT_TOO_LONG = "line_too_long"
REJECT_TIMEOUT = "timeout"
REJECT_RESOURCES = "accept_failed"
REJECT_NOT_LOCAL = "not_local"
REJECT_REASONS = (REJECT_BUSY, REJECT_TOO_LONG, REJECT_TIMEOUT, REJECT_RESOURCES,
                  REJECT_NOT_LOCAL)

#: Outcome of a request that failed inside the server.
ERROR = "error"

#: Kinds of finger query (RFC 1288 2.3).
QUERY_KINDS = ("user", "verbose", "list", "forwarding")


class Metrics:
    """The daemon's metrics; ``outcomes`` maps each service to its outcome label values.

    ``parent_pid`` adds the process metrics of the privileged parent, as
    ``fingerd_parent_process_*``, beside the worker's own ``process_*``.
    """

    def __init__(self, outcomes, registry=None, parent_pid=None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fingerd_requests", "Requests answered, by service and outcome.",
            ["service", "outcome"], registry=r)
        self.request_duration = Histogram(
            "fingerd_request_duration_seconds",
            "Time from accepting a connection to handing over its answer.",
            ["service"], buckets=DURATION_BUCKETS, registry=r)
        self.connections_active = Gauge(
            "fingerd_connections_active",
            "Connections accepted and not yet answered, all services.", registry=r)
        self.connections_rejected = Counter(
            "fingerd_connections_rejected",
            "Connections closed without an answer to a request, by reason.",
            ["reason"], registry=r)
        self.users = Gauge("fingerd_users", "Users in the served table.", registry=r)
        self.reloads = Counter(
            "fingerd_reloads", "Reads of the users file, by outcome.", ["outcome"], registry=r)
        self.last_reload_success = Gauge(
            "fingerd_last_reload_success_timestamp_seconds",
            "Unix time of the last successful read of the users file.", registry=r)
        self.worker_restarts = Counter(
            "fingerd_worker_restarts", "Workers started again after one died.", registry=r)
        self.queries = Counter(
            "fingerd_queries", "Finger queries read, by kind.", ["kind"], registry=r)
        self.answer_bytes = Counter(
            "fingerd_answer_bytes", "Bytes of answers sent, by service.", ["service"],
            registry=r)
        self.pool_busy = Gauge(
            "fingerd_pool_threads_busy", "Pool threads answering a request now.", registry=r)
        self.pool_queued = Gauge(
            "fingerd_pool_queue_depth", "Complete requests waiting for a pool thread.",
            registry=r)
        Info("fingerd_build", "The running fingerd.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        if parent_pid is not None:
            ProcessCollector(namespace="fingerd_parent", pid=lambda: parent_pid, registry=r)
        for kind in QUERY_KINDS:
            self.queries.labels(kind)
        for service, values in outcomes.items():
            self.request_duration.labels(service)
            self.answer_bytes.labels(service)
            for outcome in (*values, ERROR):
                self.requests.labels(service, outcome)
        for reason in REJECT_REASONS:
            self.connections_rejected.labels(reason)
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome)
