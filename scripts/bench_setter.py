#!/usr/bin/env python3
"""What the setter's `policy = own` costs beside `policy = any`.

Starts fingerd twice, as bench.py does (its real process model, as root, so
privilege separated; each with its own temporary directory and a users file
of 1000 users), one with `[setter] policy = own` and one with `policy = any`.
Round after round, the two in turn, a client running as root (whom `own`
lets set anyone) sends set requests with C connections in flight: each
request a new TCP connection that sends `userN` CRLF `status` CRLF, keeps its
end open and reads the answer, which must be `OK` CRLF (anything else is an
error). Each point reports requests/s, p50/p99 latency and the server's CPU
time (parent and worker, user+system, from /proc) per request, and the ratio
own/any of CPU per request and of requests/s.

Beside it, the owner lookup itself is timed in this process: the median of
fingerd.serving.peer_owner.owner_by_sock_diag(peer, sockname) over real
loopback connections, as the worker calls it right after accept, and of the
uid-to-login step (fingerd.serving.setter.Requesters.of) that follows it.

    python3 scripts/bench_setter.py [--clients 1,8] [--requests 2000] [--rounds 5]
                                    [--lookups 2000] [--out docs/bench]

Prints a Markdown table; writes it to OUT/setter.md (or OUT, if it ends in
.md) only when --out is given. Loopback only; every loop bounded in count and
time; every process started is ended by its pid.
"""

import argparse
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench import CLIENT_CPU, STATUS, USER, Fingerd, keep_in_flight, machine, process_tree_cpu  # noqa: E402

from fingerd.serving.peer_owner import owner_by_sock_diag  # noqa: E402
from fingerd.serving.setter import Requesters  # noqa: E402

USERS = 1000
ANSWER = b"OK\r\n"
POLICIES = ("own", "any")
#: No point runs longer than this, whatever happens to the server.
POINT_DEADLINE = 120.0
#: Nor does a single request wait longer than this for its answer.
REQUEST_TIMEOUT = 10.0


class SetterFingerd(Fingerd):
    """fingerd as bench.py starts it, with a setter policy."""

    def __init__(self, name, directory, policy):
        super().__init__(name, directory, setter={"policy": policy})
        self.policy = policy


def write_users(path):
    with open(path, "wb") as f:
        f.write(USER + b":" + STATUS + b"\n")
        f.write(b"".join(b"user%d:status %d\n" % (i, i) for i in range(USERS)))


def request(seq):
    """The ``seq``-th set request: users in turn, a status that changes each time."""
    return b"user%d\r\nstatus %d\r\n" % (seq % USERS, seq)


def client_process(port, concurrency, count, first, start_at, results):
    """Keep ``concurrency`` set requests in flight until ``count`` are done (or the point's
    deadline passes, or a request waits too long); report latencies and errors."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {CLIENT_CPU})
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.monotonic()
    latencies, errors = keep_in_flight(port, concurrency, count, ANSWER,
                                       began + POINT_DEADLINE, lambda i: request(first + i),
                                       REQUEST_TIMEOUT)
    results.put((latencies, errors, time.monotonic() - began))


def client_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_point(server, clients, count, first):
    """One point: ``count`` set requests with ``clients`` in flight, from one client
    process on its own core."""
    results = multiprocessing.Queue()
    start_at = time.time() + 0.3
    clients_before = client_cpu()
    worker = multiprocessing.Process(target=client_process,
                                     args=(server.setter_port, clients, count, first,
                                           start_at, results))
    worker.start()
    while time.time() < start_at:
        time.sleep(0.001)
    worker_pid = server.worker_pid()
    cpu_before = process_tree_cpu(server.proc.pid)
    worker_before = process_tree_cpu(worker_pid)
    try:
        latencies, errors, elapsed = results.get(timeout=POINT_DEADLINE + 30)
    finally:
        worker.join(30)
        if worker.is_alive():
            os.kill(worker.pid, 9)
            worker.join(10)
    user, system = (after - before for after, before in
                    zip(process_tree_cpu(server.proc.pid), cpu_before))
    worker_seconds = sum(process_tree_cpu(worker_pid)) - sum(worker_before)
    client_seconds = client_cpu() - clients_before
    latencies.sort()
    done = len(latencies)

    def pct(p):
        return latencies[min(done - 1, int(p * done))] * 1000 if done else float("nan")

    return {"policy": server.policy, "clients": clients, "rps": done / elapsed,
            "p50": pct(0.50), "p99": pct(0.99), "errors": errors, "done": done,
            "cpu_us": (user + system) / max(done, 1) * 1e6,
            "user_us": user / max(done, 1) * 1e6,
            "worker_us": worker_seconds / max(done, 1) * 1e6,
            "client_busy": client_seconds / elapsed * 100}


def median_point(points):
    best = {key: statistics.median(p[key] for p in points)
            for key in ("rps", "p50", "p99", "cpu_us", "user_us", "worker_us", "client_busy")}
    best.update(policy=points[0]["policy"], clients=points[0]["clients"],
                errors=sum(p["errors"] for p in points), done=sum(p["done"] for p in points),
                p99_range=(min(p["p99"] for p in points), max(p["p99"] for p in points)),
                cpu_range=(min(p["cpu_us"] for p in points),
                           max(p["cpu_us"] for p in points)))
    return best


def time_lookups(count, budget=60.0):
    """Median and p99 µs of owner_by_sock_diag over ``count`` real loopback connections,
    how many named this process's uid, and the median µs of Requesters.of on that uid."""
    diag, login, right = [], [], 0
    requesters = Requesters()
    end = time.monotonic() + budget
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(5)
        address = listener.getsockname()
        for _ in range(count):
            if time.monotonic() > end:
                break
            with socket.create_connection(address, timeout=5):
                conn, peer = listener.accept()
                with conn:
                    sockname = conn.getsockname()
                    started = time.perf_counter_ns()
                    uid = owner_by_sock_diag(peer, sockname)
                    middle = time.perf_counter_ns()
                    requesters.of(uid)
                    finished = time.perf_counter_ns()
            diag.append((middle - started) / 1000)
            login.append((finished - middle) / 1000)
            right += uid == os.getuid()
    diag.sort()
    return {"n": len(diag), "median": statistics.median(diag),
            "p99": diag[min(len(diag) - 1, int(0.99 * len(diag)))], "right": right,
            "login": statistics.median(login)}


def lookup_counts(samples):
    """Owner lookups by method, from fingerd_setter_owner_lookups_total."""
    return {name.split('"')[1] if '"' in name else name: value
            for name, value in samples.items()
            if name.startswith("fingerd_setter_owner_lookups_total")}


def table(rows, lookup):
    """The Markdown table; ratios are own/any at the same number of clients."""
    any_rows = {r["clients"]: r for r in rows if r["policy"] == "any"}
    out = ["| policy | clients | requests/s | p50 ms | p99 ms (range over rounds) | errors | "
           "server CPU µs/request (user+system) | of which worker µs | CPU/request own/any | "
           "requests/s own/any | "
           "sock_diag lookup µs in-process (share of CPU/request) | client core busy |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        other = any_rows.get(r["clients"]) if r["policy"] == "own" else None
        low, high = r["p99_range"]
        cells = [r["policy"], str(r["clients"]), f"{r['rps']:.0f}", f"{r['p50']:.2f}",
                 f"{r['p99']:.2f} ({low:.2f}-{high:.2f})", str(r["errors"]),
                 f"{r['cpu_us']:.0f} ({r['user_us']:.0f}+{r['cpu_us'] - r['user_us']:.0f})",
                 f"{r['worker_us']:.0f}",
                 f"{r['cpu_us'] / other['cpu_us']:.3f}" if other else "-",
                 f"{r['rps'] / other['rps']:.3f}" if other else "-",
                 f"{lookup['median']:.0f} ({lookup['median'] / r['cpu_us'] * 100:.1f}%)"
                 if r["policy"] == "own" else "-",
                 f"{r['client_busy']:.0f}%"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--requests", type=int, default=2000, help="requests a point")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=2000,
                        help="loopback connections for the in-process lookup timing")
    parser.add_argument("--out", help="a directory (writes setter.md) or a .md file")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    if args.requests < 1 or args.rounds < 1 or not clients or min(clients) < 1:
        parser.error("--requests, --rounds and --clients must be positive")
    if os.geteuid() != 0:
        parser.error("run as root: fingerd is then privilege separated, as in production, "
                     "and root may set anyone's status under policy own")

    lookup = time_lookups(args.lookups)
    print(f"  sock_diag lookup: median {lookup['median']:.1f} µs over {lookup['n']} "
          f"connections", file=sys.stderr)

    work = tempfile.mkdtemp(prefix="fingerd-bench-setter-")
    os.chmod(work, 0o755)
    servers = []
    for policy in POLICIES:
        directory = os.path.join(work, policy)
        os.mkdir(directory, 0o755)
        write_users(os.path.join(directory, "users"))
        servers.append(SetterFingerd(f"fingerd-{policy}", directory, policy))
    rows = []
    before, after = {}, {}
    seq = 0
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
            before[server.policy] = lookup_counts(server.metrics())
        for n in clients:
            points = {s.policy: [] for s in servers}
            for round_ in range(args.rounds):
                # Alternate which goes first, so neither always follows the other.
                for server in (servers if round_ % 2 == 0 else servers[::-1]):
                    point = run_point(server, n, args.requests, seq)
                    seq += args.requests
                    points[server.policy].append(point)
                    print(f"  {server.policy} {n:>3} clients round {round_ + 1}: "
                          f"{point['rps']:7.0f} req/s {point['cpu_us']:6.0f} µs/req "
                          f"errors {point['errors']}", file=sys.stderr)
            rows.extend(median_point(points[s.policy]) for s in servers)
        for server in servers:
            after[server.policy] = lookup_counts(server.metrics())
    finally:
        for server in servers:
            server.stop()
    seconds = time.monotonic() - started

    sent = args.requests * args.rounds * len(clients)
    counted = []
    for policy in POLICIES:
        got = {k: after.get(policy, {}).get(k, 0) - before.get(policy, {}).get(k, 0)
               for k in after.get(policy, {})}
        made = ", ".join(f"{k} {v:.0f}" for k, v in sorted(got.items()) if v) or "none"
        counted.append(f"{policy}: {made}")
    own_rows = {r["clients"]: r for r in rows if r["policy"] == "own"}
    any_rows = {r["clients"]: r for r in rows if r["policy"] == "any"}
    extra = "; ".join(f"{n} client{'s' if n > 1 else ''}: "
                      f"{own_rows[n]['cpu_us'] - any_rows[n]['cpu_us']:+.0f} µs"
                      for n in clients)
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; fingerd as root "
            f"(privilege separated), {USERS + 1} users, every set written durably. "
            f"{args.requests} set requests a point, each a new TCP connection from one "
            f"Python client process on its own core, sent as root; median of {args.rounds} "
            f"interleaved rounds ({seconds:.0f} s in all). Server CPU is parent + worker, "
            f"from /proc.\n\n"
            f"{table(rows, lookup)}\n\n"
            f"- Owner lookup in-process (owner_by_sock_diag on a fresh loopback connection, "
            f"netlink socket included): median {lookup['median']:.1f} µs, p99 "
            f"{lookup['p99']:.1f} µs over {lookup['n']} connections, the right uid "
            f"{lookup['right']}/{lookup['n']}; then uid to login (Requesters.of): median "
            f"{lookup['login']:.1f} µs.\n"
            f"- CPU per request, own minus any (medians): {extra}.\n"
            f"- Owner lookups the servers counted (fingerd_setter_owner_lookups_total) "
            f"over the {sent} requests each: {'; '.join(counted)}.\n")
    print(text)
    if args.out:
        path = args.out if args.out.endswith(".md") else os.path.join(args.out, "setter.md")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
