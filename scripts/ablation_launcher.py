#!/usr/bin/env python3
"""Run fingerd with one of its speed mechanisms turned off, for scripts/bench_ablation.py.

    python3 scripts/ablation_launcher.py MECHANISM -- FINGERD_ARGS...
    python3 scripts/ablation_launcher.py --check

MECHANISM is a key of PATCHES, or ``all-on`` for fingerd as it is. fingerd has
no switch for any of them: each patch here replaces one attribute of its
modules before ``fingerd.cli.main`` runs, and the worker and the users file
writer are forked from this process, so they inherit it. Every patch goes
through ``_replace``, which fails when its target is gone, so a rename in
fingerd stops the benchmark (and tests/test_ablation.py) rather than
letting it measure fingerd unchanged. ``--check`` applies every patch at
once and exits.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402 (after the path)

from fingerd import accesslog, cli, metrics  # noqa: E402
from fingerd.finger import output  # noqa: E402
from fingerd.process import logformat  # noqa: E402
from fingerd.process.parent import logrelay, writer_handle  # noqa: E402
from fingerd.process.worker import logpipe  # noqa: E402
from fingerd.process.worker import main as worker  # noqa: E402
from fingerd.serving import finger, http_head, listening, loop, web  # noqa: E402
from fingerd.serving import gate as gate_module  # noqa: E402
from fingerd.users import store, table, usersfile  # noqa: E402

#: Python's own switch interval, which the worker's replaces.
DEFAULT_SWITCH_INTERVAL = 0.005


def _replace(owner: Any, name: str, value: Any) -> None:
    """Set ``owner.name`` to ``value``; AttributeError when fingerd has no such attribute."""
    if not hasattr(owner, name):
        raise AttributeError(f"{getattr(owner, '__name__', owner)} has no {name}: "
                             f"the ablation patch needs updating")
    setattr(owner, name, value)


def switch_interval() -> None:
    """The worker keeps Python's 5 ms switch interval rather than setting 0.5 ms."""
    _replace(worker, "SWITCH_INTERVAL", DEFAULT_SWITCH_INTERVAL)


def gc_freeze() -> None:
    """The worker's objects of its start stay in the collector's generations."""
    _replace(worker.gc, "freeze", lambda: None)


def private_accept() -> None:
    """Accepted connections wrapped in socket.socket, as socket.accept does."""
    _replace(loop, "raw_socket", lambda family, kind, proto, fd:
             socket.socket(family, kind, proto, fd))


def accept_counts() -> None:
    """Accept until EAGAIN (up to ACCEPTS_PER_TURN) rather than the count TCP_INFO gives
    (and so never one without asking: the count is never 1)."""
    _replace(loop, "_queued", lambda listener: loop.ACCEPTS_PER_TURN)


def lone_accepts() -> None:
    """Ask TCP_INFO how many wait at every wake-up, as when one connection waited
    mattered no more than many."""
    _replace(loop, "MAX_UNASKED", 0)


def msg_more() -> None:
    """Answers sent without MSG_MORE: the FIN goes in a segment of its own."""
    _replace(loop, "_SEND_LAST", socket.MSG_DONTWAIT)


def defer_accept() -> None:
    """No TCP_DEFER_ACCEPT: the loop is woken by every connection before its query (no
    request_timeout reaches an infinite deferral, so no service defers)."""
    _replace(listening, "DEFER_ACCEPT_SECONDS", float("inf"))


def answer_cache_off() -> None:
    """Every finger answer and web reply made again."""
    _replace(finger.AnswerCache, "get", lambda self, table, line, make, *args: make(*args))


def common_head() -> None:
    """Every HTTP request head read line by line, as one that is not common is."""
    _replace(http_head, "common_head", lambda buf: None)


def web_prepared() -> None:
    """The web service keeps its replies but makes their entity tag and bytes again for each
    request, as before they were kept prepared."""
    _replace(web, "prepared_size",
             lambda target, reply: len(target[0]) + len(target[1]) + len(reply.body))
    _replace(web.PreparedReplies, "_lookup", lambda self, path, query: web.prepared(
        self._cache.get(self._cache.current(), (path, query), self._site.answer, path, query)))


def shards() -> None:
    """One shard: the table is one dict, built, grown and copied whole."""
    _replace(table, "SHARDS", 1)
    _replace(table, "_MASK", 0)


class _Adding:
    """Stands in for a dict of a Tally: ``adding[key] += amount`` calls ``add(key, amount)``
    (each key reads as 0)."""

    def __init__(self, add: Callable[[Any, Any], None]) -> None:
        self._add = add

    def __getitem__(self, key: object) -> int:
        return 0

    def __setitem__(self, key: object, amount: Any) -> None:
        self._add(key, amount)


def metric_tallies() -> None:
    """Requests counted by prometheus_client's Counter and Histogram (a lock each
    increment, the buckets walked in Python), as before the per-thread tallies: every
    thread's ``this_thread.tally`` hands what the loop adds to them."""
    counts = metrics.RequestCounts
    build = counts.__init__

    def __init__(self: Any, outcomes: dict, *rest: Any) -> None:
        build(self, outcomes, *rest)
        registry = CollectorRegistry()
        self.by_outcome = Counter("r", "", ["service", "outcome"], registry=registry)
        duration = Histogram("d", "", ["service"], registry=registry,
                             buckets=metrics.DURATION_BUCKETS)
        sent = Counter("b", "", ["service"], registry=registry)
        kinds = Counter("q", "", ["kind"], registry=registry)

        def request(key: tuple, amount: int) -> None:
            service, outcome, kind, _bucket = key
            self.by_outcome.labels(service, outcome).inc(amount)
            if kind in metrics.QUERY_KINDS:
                kinds.labels(kind).inc(amount)

        self.this_thread = SimpleNamespace(tally=SimpleNamespace(
            requests=_Adding(request),
            seconds=_Adding(lambda service, seconds: duration.labels(service).observe(seconds)),
            sent=_Adding(lambda service, size: sent.labels(service).inc(size))))

    def answered(self: Any) -> int:
        return int(sum(s.value for m in self.by_outcome.collect() for s in m.samples
                       if s.name.endswith("_total")))

    _replace(counts, "__init__", __init__)
    _replace(counts, "answered", answered)


def fast_parser() -> None:
    """Users files read, and checked before a write, line by line."""
    _replace(usersfile, "_parse_fast", lambda data: None)
    _replace(usersfile, "_valid_fast", lambda data: False)


def parse_quietly() -> None:
    """Reloads parse with the cyclic garbage collector on."""
    _replace(store, "parse_quietly", store.parse_users)


def sched_idle_writer() -> None:
    """The users file writer at its niceness alone: no SCHED_IDLE, hence no promotion."""
    def run_at_niceness(pid: int, niceness: int) -> str:
        nice = min(writer_handle.MAX_NICENESS, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        return f"turned off for the benchmark; it runs at niceness {nice}"

    _replace(writer_handle, "run_behind", run_at_niceness)


def access_entries() -> None:
    """Each access line made by the thread that answered, as its request ends, rather
    than a batch at a time by the worker's writing thread."""
    build = accesslog.AccessLog.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        add = self._add
        self._add = lambda entry: add(accesslog.lines_of([entry])[0])

    _replace(accesslog.AccessLog, "__init__", __init__)
    _replace(logpipe, "lines_of", list)  # the batch holds lines made already


def access_batch_lines() -> None:
    """Batches of 256 access lines (about the 32 KiB of before) rather than 1024."""
    _replace(logpipe, "ACCESS_BATCH_LINES", 256)


def access_shapes() -> None:
    """Each batch of access lines checked by one regular expression (and what
    bytes.translate leaves of it), as before its check on the lines' shapes."""
    line = logrelay._LINE_START + rb"[^\x1f]*"
    batch = re.compile(line + rb"(?:" + re.escape(logformat.ACCESS_LINE_END) + line + rb")*")
    printable = bytes(range(0x20, 0x7F))
    stamp_end, line_end = logrelay._STAMP_END, logformat.ACCESS_LINE_END

    def as_written(record: bytes, count: int, tag: bytes) -> bytes | None:
        lines = record[len(logformat.ACCESS_RECORD_START):]
        if (lines.translate(None, printable) != stamp_end + (line_end + stamp_end) * (count - 1)
                or batch.fullmatch(lines) is None):
            return None
        return lines.replace(stamp_end, tag).replace(line_end, b"\n") + b"\n"

    _replace(logrelay, "_as_written", as_written)


def gate_lock() -> None:
    """The connection gate's counts under a lock, which every thread that takes or frees
    a slot takes, as before slots freed by pool threads were handed back to the loop's.

    Each method of the gate runs whole under the lock, through one call more than
    the lock taken inside it was (1,100 instructions a query, 2.5%:
    docs/bench/ablation.md). Nothing is ever handed back, so neither ``enter`` nor
    ``claim`` frees a slot itself, which under the lock it holds would deadlock."""
    gate = gate_module.ConnectionGate
    build = gate.__init__

    def __init__(self: Any, limit: int, per_source: int = 0) -> None:
        build(self, limit, per_source)
        self.lock = threading.Lock()

    def locked(method: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def call(self: Any, source: Any) -> Any:
            with self.lock:
                return method(self, source)
        return call

    _replace(gate, "__init__", __init__)
    _replace(gate, "hand_back", locked(gate.leave))
    for name in ("enter", "leave", "claim", "release"):
        _replace(gate, name, locked(getattr(gate, name)))


def kept_invisible_runs() -> None:
    """Each worker finds the invisible characters in Python's Unicode database, a pass
    over every code point, rather than taking the runs kept in finger/output.py."""
    _replace(output, "CHECKED_UNICODE", (0, 0, 0))


#: Each mechanism's name and the patch that turns it off, alone.
PATCHES: dict[str, Callable[[], None]] = {
    "switch-interval": switch_interval,
    "gc-freeze": gc_freeze,
    "private-accept": private_accept,
    "tcp-info-accept-count": accept_counts,
    "lone-accept": lone_accepts,
    "msg-more": msg_more,
    "defer-accept": defer_accept,
    "answer-cache": answer_cache_off,
    "lock-free-gate": gate_lock,
    "kept-invisible-runs": kept_invisible_runs,
    "common-head": common_head,
    "web-prepared": web_prepared,
    "shards": shards,
    "metric-tallies": metric_tallies,
    "fast-parser": fast_parser,
    "parse-quietly": parse_quietly,
    "sched-idle-writer": sched_idle_writer,
    "access-entries": access_entries,
    "access-batch-lines": access_batch_lines,
    "access-shapes": access_shapes,
}
#: fingerd with every mechanism on.
ALL_ON = "all-on"


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        for patch in PATCHES.values():
            patch()
        return 0
    if len(argv) < 2 or argv[1] != "--" or (argv[0] not in PATCHES and argv[0] != ALL_ON):
        print(__doc__.split("\n\n")[1], f"MECHANISM: {ALL_ON}, {', '.join(PATCHES)}",
              sep="\n", file=sys.stderr)
        return 2
    if argv[0] in PATCHES:
        PATCHES[argv[0]]()
    sys.argv = ["fingerd", *argv[2:]]
    return cli.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
