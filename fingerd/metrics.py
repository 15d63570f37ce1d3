"""The metric families (README, "Metrics and logs"), in a registry of their own.

Each Metrics object owns its registry, so tests and the worker never share
global state. Label values come from the small fixed sets of outcomes.py.
"""

import collections
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import accumulate
from typing import Optional, Protocol

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fingerd import __version__
from fingerd.outcomes import BY_SERVICE, ERROR, OWNER_LOOKUPS, QUERY_KINDS, REJECT_REASONS


def _disable_created_series() -> None:
    """Leave out the ``_created`` series beside every counter and histogram: they
    double the output for a value that process_start_time_seconds already gives.

    prometheus-client 0.18 has a function for it; 0.16 and 0.17 (Debian 12 ships
    0.16.0) only the module flag that function sets.
    """
    switch = getattr(prometheus_client, "disable_created_metrics", None)
    if switch is not None:
        switch()
    else:
        prometheus_client.metrics._use_created = False


_disable_created_series()

#: Buckets for a finger answer: most take well under a millisecond.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKET_NAMES = (*map(str, DURATION_BUCKETS), "+Inf")
#: ``bucket_of(seconds)``: the index in BUCKET_NAMES of the bucket a request of ``seconds``
#: falls in, its first bound at least ``seconds``. A C call, no Python.
bucket_of = partial(bisect_left, DURATION_BUCKETS)


class ReloadCounts(Protocol):
    """The parent's counts of configuration reloads (process/parent_counts.py)."""

    def read(self) -> Mapping[str, int]: ...


class Metrics:
    """The daemon's metrics; ``outcomes`` maps each counted service to its outcome labels.

    ``parent_pid`` adds the process metrics of the privileged parent, as
    ``fingerd_parent_process_*``, beside the worker's own ``process_*``;
    ``config_reloads`` the parent's count of configuration reloads
    (process/parent_counts.py); ``access_log_dropped`` reads the count of
    access log lines dropped (process/worker/logpipe.py's PipeHandler);
    ``on_first_answer`` is called once, by the first thread to count an answer
    (RequestCounts).
    """

    def __init__(self, outcomes: Mapping[str, Sequence[str]] = BY_SERVICE,
                 registry: Optional[CollectorRegistry] = None, parent_pid: Optional[int] = None,
                 config_reloads: Optional[ReloadCounts] = None,
                 access_log_dropped: Callable[[], int] = lambda: 0,
                 on_first_answer: Callable[[], None] = lambda: None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = RequestCounts(outcomes, on_first_answer)
        r.register(self.requests)
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
        self.store_up = Gauge(
            "fingerd_store_up", "1 while the store of statuses is reachable, 0 otherwise.",
            registry=r)
        self.store_up.set(1)
        self.worker_restarts = Counter(
            "fingerd_worker_restarts", "Workers started again after one died.", registry=r)
        self.pool_busy = Gauge(
            "fingerd_pool_threads_busy", "Pool threads answering a request now.", registry=r)
        self.pool_queued = Gauge(
            "fingerd_pool_queue_depth", "Complete requests waiting for a pool thread.",
            registry=r)
        Info("fingerd_build", "The running fingerd.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        if parent_pid is not None:
            ProcessCollector(namespace="fingerd_parent", pid=lambda: parent_pid, registry=r)
        self.owner_lookups = Counter(
            "fingerd_setter_owner_lookups",
            "How the account behind a setter client was found, by method.", ["method"],
            registry=r)
        for method in OWNER_LOOKUPS:
            self.owner_lookups.labels(method)
        for reason in REJECT_REASONS:
            self.connections_rejected.labels(reason)
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome)
        if config_reloads is not None:
            r.register(ConfigReloadsCollector(config_reloads))
        r.register(AccessLogDropsCollector(access_log_dropped))


class ConfigReloadsCollector(Collector):
    """``fingerd_config_reloads_total``, read from the parent's counts at each scrape."""

    def __init__(self, counts: ReloadCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "fingerd_config_reloads", "Reloads of the configuration (SIGHUP), by outcome.",
            labels=["outcome"])
        for outcome, count in self._counts.read().items():
            family.add_metric([outcome], count)
        yield family


class AccessLogDropsCollector(Collector):
    """``fingerd_access_log_dropped_lines_total``, read at each scrape."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "fingerd_access_log_dropped_lines",
            "Access log lines dropped because the parent did not read them in time.")
        family.add_metric([], self._count())
        yield family


#: A key of Tally.requests: service, outcome, kind, and bucket_of the request's seconds.
RequestKey = tuple[str, str, Optional[str], int]


class Tally:
    """One thread's request counts, added to by that thread alone, with no lock and no
    call (serving/loop.py's ``_finish``)::

        requests[service, outcome, kind, bucket_of(seconds)] += 1
        seconds[service] += seconds
        sent[service] += bytes sent

    ``seconds`` and ``sent`` hold every counted service from the start;
    ``requests`` gains a key the first time its thread counts one. It is a
    defaultdict, not a Counter: a Counter's ``__delitem__``, written in
    Python, sends every store into it through a slot wrapper (1,200 more
    instructions a query, scripts/instructions.py). Scrapes
    read a tally only through ``dict()`` copies, which CPython makes in one
    step, holding the GIL: a copy never sees a dict change size under it.
    """

    __slots__ = ("requests", "seconds", "sent")

    def __init__(self, services: Iterable[str]) -> None:
        self.requests: collections.defaultdict[RequestKey, int] = collections.defaultdict(int)
        self.seconds = dict.fromkeys(services, 0.0)
        self.sent = dict.fromkeys(self.seconds, 0)


class ThisThread(threading.local):
    """``tally``: the calling thread's Tally. threading.local runs ``__init__`` once in
    each thread, the first time that thread reads ``tally`` (and at once in the thread
    that makes this object): the tally is made then and handed to ``keep``, for scrapes
    to sum."""

    def __init__(self, services: Iterable[str], keep: Callable[[Tally], None]) -> None:
        self.tally = Tally(services)
        keep(self.tally)


class RequestCounts(Collector):
    """The per-request families: fingerd_requests_total, fingerd_request_duration_seconds,
    fingerd_answer_bytes_total and fingerd_queries_total.

    prometheus_client takes a lock for every increment and walks the
    histogram's buckets in Python: about 7 µs a query, one seventh of its
    server CPU. Here each thread that answers adds plain numbers to a tally
    of its own, ``this_thread.tally``, with no lock since no other thread
    writes it and no call into fingerd, and a scrape sums the tallies.
    Every label set is shown from the start, at zero.

    ``on_first_answer`` is called once, by the first thread that answers,
    as it makes its tally to count that answer (before its client's
    connection is closed): a thread's first count, and not each count,
    is the one moment with a call in it.
    """

    def __init__(self, outcomes: Mapping[str, Sequence[str]],
                 on_first_answer: Callable[[], None] = lambda: None) -> None:
        self._outcomes = outcomes
        self._tallies: list[Tally] = []
        self._lock = threading.Lock()
        #: Called by the next tally kept, then None. None while ``this_thread`` is made:
        #: the tally it makes at once is the constructing thread's, which answered nothing.
        self._on_first_answer: Optional[Callable[[], None]] = None
        #: ``this_thread.tally``: the calling thread's Tally, for the serving loop to add to.
        self.this_thread = ThisThread(outcomes, self._keep)
        self._on_first_answer = on_first_answer

    def _keep(self, tally: Tally) -> None:
        with self._lock:
            self._tallies.append(tally)
            first_answer, self._on_first_answer = self._on_first_answer, None
        if first_answer is not None:
            first_answer()

    def _copies(self) -> list[tuple[dict[RequestKey, int], dict[str, float], dict[str, int]]]:
        """Each thread's counts as they are now (see Tally)."""
        with self._lock:
            tallies = list(self._tallies)
        return [(dict(tally.requests), dict(tally.seconds), dict(tally.sent))
                for tally in tallies]

    def answered(self) -> int:
        """Requests answered so far, by every service (a reading, not a synchronisation)."""
        return sum(sum(requests.values()) for requests, _seconds, _sent in self._copies())

    def collect(self) -> Iterator[Metric]:
        outcomes = self._outcomes
        by_outcome = {(service, outcome): 0 for service, values in outcomes.items()
                      for outcome in (*values, ERROR)}
        buckets = {service: [0] * len(BUCKET_NAMES) for service in outcomes}
        seconds = dict.fromkeys(outcomes, 0.0)
        sent = dict.fromkeys(outcomes, 0)
        kinds = dict.fromkeys(QUERY_KINDS, 0)
        for requests, tally_seconds, tally_sent in self._copies():
            for (service, outcome, kind, bucket), count in requests.items():
                by_outcome[service, outcome] = by_outcome.get((service, outcome), 0) + count
                buckets[service][bucket] += count
                if kind in kinds:
                    kinds[kind] += count
            for service in outcomes:
                seconds[service] += tally_seconds[service]
                sent[service] += tally_sent[service]
        yield _counter("fingerd_requests", "Requests answered, by service and outcome.",
                       ["service", "outcome"], by_outcome.items())
        duration = HistogramMetricFamily(
            "fingerd_request_duration_seconds",
            "Time from accepting a connection to handing over its answer.",
            labels=["service"])
        for service in outcomes:
            duration.add_metric([service], list(zip(BUCKET_NAMES, accumulate(buckets[service]))),
                                seconds[service])
        yield duration
        yield _counter("fingerd_answer_bytes", "Bytes of answers sent, by service.",
                       ["service"], (((service,), n) for service, n in sent.items()))
        yield _counter("fingerd_queries", "Finger queries read, by kind.", ["kind"],
                       (((kind,), n) for kind, n in kinds.items()))


def _counter(name: str, documentation: str, labels: list[str],
             values: Iterable[tuple[Sequence[str], float]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family
