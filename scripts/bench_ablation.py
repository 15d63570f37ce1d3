#!/usr/bin/env python3
"""What each of fingerd's speed mechanisms gains: each turned off alone, against all on.

Every variant is fingerd run by scripts/ablation_launcher.py with one mechanism
turned off (``all-on``: none), started as scripts/bench.py starts fingerd
(as root, privilege separated, pinned to the first core, the C load
generator to the second). All variants run at once and are measured in
turn, round after round, the order rotated each round; a gain is a ratio
within one round (off / all-on - 1, so +10% means the mechanism saves a
tenth of what it would cost without it), reported as the median and range
over the rounds.

- queries: server CPU per query (parent and worker, from /proc) at each
  number of clients, with bench.py's run_point; the Twisted, uvloop and C
  epoll baselines are measured in the same rounds. With --access-log every
  fingerd logs each request (the access-* mechanisms act only then).
- files (mechanisms that act on reloads and sets, on a users file of
  --users entries): a reload (SIGHUP to the worker, timed to its "read N
  users" log line), its CPU (the daemon's, to 2 s after the line, the
  replaced table's freeing included), the worst query latency meanwhile and
  the median and p90 of the queries started before the line;
  then --sets sets in a row through the setter, their median latency, the
  daemon's CPU per set (writers included) and the query p99 meanwhile. A
  probe asks for one user every 2 ms throughout, from the client core.
- starts (mechanisms that act on a worker's start): seconds from the
  daemon's launch to its first finger answer, then those a ``fingerd-ctl
  reload`` takes (a new worker started, ready and accepting), on the small
  users file of the queries, --start-rounds rounds, each daemon started anew.

    python3 scripts/bench_ablation.py [--clients 1,16,128] [--queries 20000] [--rounds 5]
        [--variants MECHANISM,...] [--users 1000000] [--sets 15] [--file-rounds 3]
        [--start-rounds 10] [--phases queries,files,starts] [--access-log] [--out FILE.md]

Prints the Markdown tables; also writes them to --out. Loopback only; every
process started is ended by its pid.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ablation_launcher import ALL_ON, PATCHES  # noqa: E402
from bench import (  # noqa: E402
    ANSWER,
    QUERY,
    ROOT,
    STATUS,
    USER,
    EpollC,
    Fingerd,
    Server,
    Twisted,
    Uvloop,
    build_loadgen,
    machine,
    process_tree_cpu,
    run_point,
)
from bench_scale import write_users  # noqa: E402
from bench_sets import LogWatch, exchange, on_client_core, parent_cpu, pct, worker_pid  # noqa: E402

LAUNCHER = os.path.join(HERE, "ablation_launcher.py")
#: The mechanisms that act on reloads and sets, measured there.
FILE_MECHANISMS = ("shards", "fast-parser", "parse-quietly", "switch-interval", "gc-freeze",
                   "copy-file-range", "sched-idle-writer")
BASELINES = {"twisted": Twisted, "uvloop": Uvloop, "c-epoll": EpollC}
#: Seconds between the probe's queries.
PROBE_INTERVAL = 0.002
#: Seconds the probe and the CPU count go on after a reload's log line: the replaced
#: table is freed after it (``free_gradually`` waits up to 1 s for its last reader).
AFTER_RELOAD = 2.0
RELOAD_TIMEOUT = 120.0


class Ablated(Fingerd):
    """fingerd with ``mechanism`` turned off by the launcher (``all-on``: as it is);
    ``settings`` go to [fingerd]."""

    def __init__(self, mechanism: str, directory: str, **settings: str) -> None:
        super().__init__(mechanism, directory, setter={"rate_limit": "0"}, **settings)
        self.mechanism = mechanism

    def command(self) -> list:
        return [sys.executable, LAUNCHER, self.mechanism, "--", "-n", "-c", self.config]


def make_servers(work: str, names: list, users: Callable[[str], None],
                 **settings: str) -> list:
    """A server for each name, each in a directory of its own with its users file;
    ``settings`` go to each fingerd's [fingerd]."""
    servers: list[Server] = []
    for name in names:
        directory = os.path.join(work, name)
        os.mkdir(directory, 0o755)
        users(os.path.join(directory, "users"))
        maker = BASELINES.get(name)
        servers.append(maker(name, directory) if maker else
                       Ablated(name, directory, **settings))
    return servers


def small_users(path: str) -> None:
    with open(path, "wb") as f:
        f.write(USER + b":" + STATUS + b"\n" + b"".join(b"user%d:status %d\n" % (i, i)
                                                       for i in range(1000)))


def interleaved(servers: list, rounds: int, measure: Callable[[Any], dict]) -> dict:
    """``{server name: [figures of each round]}``, each round over every server in turn,
    starting one further along each round."""
    points: dict[str, list] = {s.name: [] for s in servers}
    for r in range(rounds):
        turn = r % len(servers)
        for server in servers[turn:] + servers[:turn]:
            points[server.name].append(measure(server))
            print(f"  round {r + 1} {server.name:>22}: " + " ".join(
                f"{k}={v:.4g}" for k, v in points[server.name][-1].items()), file=sys.stderr)
    return points


def ratios(points: dict, name: str, base: str, key: str) -> list:
    """Round by round, ``name``'s figure over ``base``'s."""
    return [p[key] / b[key] if b[key] else float("nan")
            for p, b in zip(points[name], points[base])]


def spread(values: list, scale: float = 1.0, offset: float = 0.0, form: str = "{:+.0f}") -> str:
    """The median and the range over the rounds."""
    shown = [form.format((v - offset) * scale) for v in
             (statistics.median(values), min(values), max(values))]
    return f"{shown[0]} ({shown[1]} to {shown[2]})"


def gain(points: dict, name: str, key: str) -> str:
    """What turning the mechanism off costs, in per cent of all-on, median and range."""
    return spread(ratios(points, name, ALL_ON, key), 100, 1) + "%"


# Queries.

def running_ns(pid: int) -> int:
    """Nanoseconds ``pid``'s threads have run so far (/proc's schedstat: finer than the
    ticks of /proc/PID/stat, for a process that runs a few milliseconds a point)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def query_phase(work: str, names: list, clients: list, queries: int, rounds: int,
                loadgen: str, **settings: str) -> dict:
    """``{clients: {server name: [figures of each round]}}`` for all-on and ``names``: the
    server's CPU per query, and the root parent's (a baseline's: its only process)."""
    servers = make_servers(work, [ALL_ON, *names], small_users, **settings)
    by_clients = {}
    try:
        for server in servers:
            server.start()
        for n in clients:
            def cpu_per_query(server: Server, n: int = n) -> dict:
                before = running_ns(server.proc.pid)
                cpu_us = run_point(server, n, queries, loadgen)["cpu_us"]
                return {"cpu_us": cpu_us,
                        "parent_us": (running_ns(server.proc.pid) - before) / 1e3 / queries}

            by_clients[n] = interleaved(servers, rounds, cpu_per_query)
    finally:
        for server in servers:
            server.stop()
    return by_clients


def query_tables(by_clients: dict) -> str:
    clients = list(by_clients)
    head = "| ".join(f"{n} client{'s' if n > 1 else ''} " for n in clients)
    rule = "|---|" + "---:|" * (2 * len(clients))
    gains = [f"| mechanism off | {head}| " + "| ".join(
        f"µs/query at {n} " for n in clients) + "|", rule]
    for name in (name for name in PATCHES if name in by_clients[clients[0]]):
        gains.append(f"| {name} | " + " | ".join(
            gain(by_clients[n], name, "cpu_us") for n in clients) + " | " + " | ".join(
            f"{statistics.median(p['cpu_us'] for p in by_clients[n][name]):.1f}"
            for n in clients) + " |")
    gains.append("| (all on) | " + " | ".join("-" for _ in clients) + " | " + " | ".join(
        f"{statistics.median(p['cpu_us'] for p in by_clients[n][ALL_ON]):.1f}"
        for n in clients) + " |")
    gains += ["", "The root parent's CPU per query (the access log's relay), µs: median "
              "(range over rounds).", "", f"| variant | {head}|",
              "|---|" + "---:|" * len(clients)]
    for name in [ALL_ON, *(name for name in PATCHES if name in by_clients[clients[0]])]:
        gains.append(f"| {name} | " + " | ".join(
            spread([p["parent_us"] for p in by_clients[n][name]], form="{:.2f}")
            for n in clients) + " |")
    baselines = [f"| fingerd all-on's CPU per query vs | {head}|",
                 "|---|" + "---:|" * len(clients)]
    measured = [base for base in BASELINES if base in by_clients[clients[0]]]
    for base in measured:
        baselines.append(f"| {base} | " + " | ".join(
            spread(ratios(by_clients[n], ALL_ON, base, "cpu_us"), form="{:.2f}")
            for n in clients) + " |")
    return "\n".join(gains) + ("\n\n" + "\n".join(baselines) if measured else "")


# Reloads and sets.

def probe(port: int, stop: Any, results: Any) -> None:
    """Ask for one user every PROBE_INTERVAL until ``stop`` is set; each answered query's
    start (on the monotonic clock, which every process shares) and latency, and the
    count of errors."""
    on_client_core(False)
    latencies, errors = [], 0
    while not stop.is_set():
        started = time.monotonic()
        reply, took = exchange(port, QUERY, timeout=30)
        if reply == ANSWER:
            latencies.append((started, took))
        else:
            errors += 1
        time.sleep(PROBE_INTERVAL)
    results.put((latencies, errors))


def probed(server: Ablated, action: Callable[[], dict]) -> dict:
    """``action()``'s figures, with the daemon's CPU over it and the probe's latencies;
    an action that gives a ``window`` (start, end) also gets the median and p90 of the
    queries started within it."""
    stop = multiprocessing.Event()
    results: multiprocessing.Queue = multiprocessing.Queue()
    prober = multiprocessing.Process(target=probe, args=(server.port, stop, results))
    prober.start()
    try:
        time.sleep(0.2)
        before = daemon_cpu(server)
        figures = action()
        figures["cpu_s"] = daemon_cpu(server) - before
        stop.set()
        latencies, errors = results.get(timeout=60)
    finally:
        stop.set()
        prober.join(30)
        if prober.is_alive():
            prober.kill()
            prober.join(10)
    took = [t for _, t in latencies]
    figures.update(query_p99_ms=pct(took, 0.99) * 1000,
                   query_max_ms=max(took, default=float("nan")) * 1000,
                   query_errors=errors)
    window = figures.pop("window", None)
    if window is not None:
        within = [t for at, t in latencies if window[0] <= at <= window[1]]
        figures.update(query_within_p50_ms=pct(within, 0.5) * 1000,
                       query_within_p90_ms=pct(within, 0.9) * 1000)
    return figures


def daemon_cpu(server: Ablated) -> float:
    """CPU seconds of the daemon so far: the parent, the worker and the writers, live or
    reaped (only differences mean anything)."""
    pid = server.proc.pid
    worker = worker_pid(pid)
    return sum(parent_cpu(pid, worker)) + sum(process_tree_cpu(worker))


def reload(server: Ablated) -> dict:
    """SIGHUP to the worker; seconds to its "read N users" line (that span is the
    ``window``), and on to AFTER_RELOAD."""
    watch = LogWatch(server.log_file)
    started = time.monotonic()
    os.kill(worker_pid(server.proc.pid), 1)
    while not any(": read " in line and " users" in line for line in watch.lines_since()):
        if time.monotonic() - started > RELOAD_TIMEOUT:
            raise RuntimeError(f"{server.name}: no reload within {RELOAD_TIMEOUT} s")
        time.sleep(0.002)
    took = time.monotonic() - started
    time.sleep(AFTER_RELOAD)
    return {"reload_s": took, "window": (started, started + took)}


def set_run(server: Ablated, count: int, users: int, first: int) -> dict:
    """``count`` sets one after the other, each of another user; the median latency of
    those answered OK, and how many were not."""
    latencies, errors = [], 0
    for i in range(first, first + count):
        reply, took = exchange(server.setter_port, b"user%d\r\nset %d\r\n" % (
            (i * 7919) % users, i))
        if reply == b"OK\r\n":
            latencies.append(took)
        else:
            errors += 1
    return {"set_p50_ms": pct(latencies, 0.5) * 1000, "set_errors": errors}


def file_phase(work: str, names: list, users: int, sets: int, rounds: int) -> dict:
    """``{variant: [figures of each round]}`` for all-on and ``names``."""
    servers = make_servers(work, [ALL_ON, *names], lambda path: write_users(path, users))
    counter = iter(range(10**9))

    def measure(server: Ablated) -> dict:
        figures = {f"reload_{k}": v for k, v in probed(server, lambda: reload(server)).items()}
        first = next(counter) * sets
        during_sets = probed(server, lambda: set_run(server, sets, users, first))
        during_sets["cpu_s"] /= sets
        figures.update({f"sets_{k}": v for k, v in during_sets.items()})
        return figures

    try:
        for server in servers:
            server.start()
        return interleaved(servers, rounds, measure)
    finally:
        for server in servers:
            server.stop()


#: The file phase's figures, as the table shows them.
FILE_FIGURES = (("reload_reload_s", "reload s"), ("reload_cpu_s", "reload CPU s"),
                ("reload_query_max_ms", "worst query during the reload, ms"),
                ("reload_query_within_p50_ms", "query p50 while the file is read, ms"),
                ("reload_query_within_p90_ms", "query p90 while the file is read, ms"),
                ("sets_set_p50_ms", "set p50 ms"), ("sets_cpu_s", "CPU per set s"),
                ("sets_query_p99_ms", "query p99 during sets, ms"))


def file_table(points: dict) -> str:
    out = ["| mechanism off | " + " | ".join(label for _, label in FILE_FIGURES) + " |",
           "|---|" + "---:|" * len(FILE_FIGURES)]
    out.append("| (all on: the figure) | " + " | ".join(
        spread([p[key] for p in points[ALL_ON]], form="{:.3g}") for key, _ in FILE_FIGURES)
        + " |")
    for name in (name for name in FILE_MECHANISMS if name in points):
        out.append(f"| {name} | " + " | ".join(gain(points, name, key)
                                              for key, _ in FILE_FIGURES) + " |")
    def total(key: str) -> int:
        return sum(p[key] for ps in points.values() for p in ps)

    return "\n".join(out) + (
        f"\n\nProbe queries not answered as expected: "
        f"{total('reload_query_errors') + total('sets_query_errors')}; sets not answered OK: "
        f"{total('sets_set_errors')}.")


# Starts and reloads.

#: The mechanisms that act on a worker's start, measured there.
START_MECHANISMS = ("kept-invisible-runs",)
#: The figures of the starts phase, as its table shows them.
START_FIGURES = (("start_s", "launch to first answer, s"),
                 ("reload_s", "fingerd-ctl reload, s"))


def start_and_reload(server: Ablated) -> dict:
    """Launch ``server`` and time its first answer (polled every 50 ms, as bench.py
    polls), then a ``fingerd-ctl reload``; stop it."""
    started = time.monotonic()
    server.start()
    try:
        launched = time.monotonic() - started
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "fingerd.ctl", "-c", server.config, "reload"],
                       cwd=ROOT, check=True, timeout=60, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
        return {"start_s": launched, "reload_s": time.monotonic() - started}
    finally:
        server.stop()


def start_phase(work: str, names: list, rounds: int) -> dict:
    """``{variant: [figures of each round]}`` for all-on and ``names``."""
    servers = make_servers(work, [ALL_ON, *names], small_users)
    return interleaved(servers, rounds, start_and_reload)


def start_table(points: dict) -> str:
    out = ["| mechanism off | " + " | ".join(label for _, label in START_FIGURES) + " |",
           "|---|" + "---:|" * len(START_FIGURES),
           "| (all on: the figure) | " + " | ".join(
               spread([p[key] for p in points[ALL_ON]], form="{:.3g}")
               for key, _ in START_FIGURES) + " |"]
    out += [f"| {name} | " + " | ".join(gain(points, name, key) for key, _ in START_FIGURES)
            + " |" for name in START_MECHANISMS if name in points]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,16,128")
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sets", type=int, default=15)
    parser.add_argument("--file-rounds", type=int, default=3)
    parser.add_argument("--start-rounds", type=int, default=10)
    parser.add_argument("--phases", default="queries,files,starts")
    parser.add_argument("--variants", default=",".join([*PATCHES, *BASELINES]),
                        help="what is measured beside all-on (the files and starts phases take "
                             "those among FILE_MECHANISMS and START_MECHANISMS)")
    parser.add_argument("--access-log", action="store_true",
                        help="every fingerd with access_log = yes (the queries phase): the "
                             "access log's mechanisms act only then")
    parser.add_argument("--out")
    args = parser.parse_args()
    phases, variants = args.phases.split(","), args.variants.split(",")
    work = tempfile.mkdtemp(prefix="fingerd-ablation-")
    os.chmod(work, 0o755)
    started = time.monotonic()
    parts = [f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}."]
    if "queries" in phases:
        loadgen = build_loadgen(work)
        if loadgen is None:
            raise SystemExit("cannot build scripts/loadgen.c")
        os.mkdir(os.path.join(work, "queries"), 0o755)
        settings = {"access_log": "yes"} if args.access_log else {}
        by_clients = query_phase(os.path.join(work, "queries"), variants,
                                 [int(c) for c in args.clients.split(",")], args.queries,
                                 args.rounds, loadgen, **settings)
        parts.append(f"## Queries\n\n{args.queries} queries a point from the C load generator"
                     f"{' to fingerd with access_log = yes' if args.access_log else ''}, "
                     f"{args.rounds} interleaved rounds; a gain is the server CPU per query "
                     f"with the mechanism off over all-on's in the same round, minus 1: "
                     f"median (range over rounds).\n\n{query_tables(by_clients)}")
    if "files" in phases:
        os.mkdir(os.path.join(work, "files"), 0o755)
        points = file_phase(os.path.join(work, "files"),
                            [name for name in variants if name in FILE_MECHANISMS],
                            args.users, args.sets, args.file_rounds)
        parts.append(f"## Reloads and sets\n\nA users file of {args.users + 1} entries, "
                     f"{args.file_rounds} interleaved rounds of a reload and {args.sets} sets "
                     f"per variant; the first row gives all-on's figures, the others what "
                     f"turning the mechanism off costs, as above.\n\n{file_table(points)}")
    if "starts" in phases:
        os.mkdir(os.path.join(work, "starts"), 0o755)
        points = start_phase(os.path.join(work, "starts"),
                             [name for name in variants if name in START_MECHANISMS],
                             args.start_rounds)
        parts.append(f"## Starts and reloads\n\n{args.start_rounds} interleaved rounds, each "
                     f"daemon launched anew on the queries' users file; gains as above."
                     f"\n\n{start_table(points)}")
    parts.append(f"{time.monotonic() - started:.0f} s in all.")
    text = "\n\n".join(parts) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
