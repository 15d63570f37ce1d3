#!/usr/bin/env python3
"""Scale, idle and flood figures for fingerd (issue targets of the speed work).

- loading and reloading a 1,000,000-line users file;
- query latency with and without reloads of that file going on;
- the worker's resident memory with 100,000 users;
- an honest query's latency beside 300 idle connections;
- 2,000 connections arriving at once: each answered or told busy, none hanging;
- the worker's memory before and after a stream of garbage.

    python3 scripts/bench_scale.py [--out docs/bench]

Loopback only; every loop bounded in count and time.
"""

import argparse
import os
import selectors
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import (  # noqa: E402
    ANSWER,
    STATUS,
    USER,
    Fingerd,
    advance,
    build_loadgen,
    machine,
    open_query,
    run_point,
)

from fingerd.metrics import Metrics  # noqa: E402
from fingerd.users.store import UserStore  # noqa: E402


def write_users(path, count):
    with open(path, "wb") as f:
        f.write(USER + b":" + STATUS + b"\n")
        for start in range(0, count, 100000):
            f.write(b"".join(b"user%d:status of user %d\n" % (i, i)
                             for i in range(start, min(count, start + 100000))))


def worker_pid(parent):
    with open(f"/proc/{parent}/task/{parent}/children") as f:
        return int(f.read().split()[0])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_times(path, rounds=3):
    loads, reloads = [], []
    for _ in range(rounds):
        store = UserStore(path, Metrics())
        started = time.perf_counter()
        store.load()
        loads.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.reload(force=True)
        reloads.append(time.perf_counter() - started)
    return statistics.median(loads), statistics.median(reloads), len(store.table)


def with_reloads(server, clients, queries, loadgen, every=2.0):
    """A load point while the daemon is sent SIGHUP as it starts and every ``every`` seconds."""
    stop = threading.Event()
    sent = [0]

    def hup():
        delay = 0.6
        while not stop.wait(delay):
            server.proc.send_signal(signal.SIGHUP)
            sent[0] += 1
            delay = every

    thread = threading.Thread(target=hup, daemon=True)
    thread.start()
    try:
        point = run_point(server, clients, queries, loadgen)
    finally:
        stop.set()
        thread.join(5)
    point["reloads"] = sent[0]
    return point


def burst(port, count, timeout=30.0):
    """Open ``count`` connections at once, each sending a query; classify the endings."""
    sel = selectors.DefaultSelector()
    outcome = {"answered": 0, "busy": 0, "other": 0, "hanging": 0}
    for _ in range(count):
        open_query(sel, port)
    deadline = time.monotonic() + timeout
    open_count = count
    while open_count and time.monotonic() < deadline:
        for key, mask in sel.select(1):
            done = advance(sel, key, mask)
            if done is None:
                continue
            reply = done[0]
            kind = ("answered" if reply == ANSWER else
                    "busy" if reply == b"Server busy, try again later\r\n" else "other")
            outcome[kind] += 1
            open_count -= 1
    outcome["hanging"] = open_count
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return outcome


def garbage(port, count):
    """``count`` connections sending junk: long lines, binary, nothing."""
    junk = [b"x" * 5000, bytes(range(256)) * 8, b"\r\n" * 10, b"\xff" * 2000 + b"\n", b""]
    for i in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(junk[i % len(junk)])
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "docs", "bench"))
    parser.add_argument("--queries", type=int, default=20000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fingerd-scale-")
    os.chmod(work, 0o755)
    loadgen = build_loadgen(work)
    client = "the C load generator" if loadgen else "the Python client"
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, load from {client}.", ""]

    big = os.path.join(work, "big")
    os.mkdir(big, 0o755)
    write_users(os.path.join(big, "users"), 1_000_000)
    load, reload, count = load_times(os.path.join(big, "users"))
    lines.append(f"- {count} users: load {load:.2f} s, reload {reload:.2f} s (median of 3).")

    server = Fingerd("fingerd", big, threads="4")
    server.start()
    try:
        calm = run_point(server, 16, args.queries, loadgen)
        # Three times the queries, with a reload forced about as often as one takes,
        # so that reloading goes on through most of the point.
        busy = with_reloads(server, 16, 3 * args.queries, loadgen, every=reload)
        seconds = 3 * args.queries / busy["qps"]
        lines.append(f"- 16 clients on that table: p50 {calm['p50']:.2f} ms, p99 "
                     f"{calm['p99']:.2f} ms, max {calm['max']:.1f} ms without reloads; "
                     f"p50 {busy['p50']:.2f} ms, p99 {busy['p99']:.2f} ms, max "
                     f"{busy['max']:.1f} ms with {busy['reloads']} forced reloads in "
                     f"{seconds:.1f} s; errors {calm['errors'] + busy['errors']}.")
    finally:
        server.stop()

    mid = os.path.join(work, "mid")
    os.mkdir(mid, 0o755)
    write_users(os.path.join(mid, "users"), 100_000)
    small = os.path.join(work, "small")
    os.mkdir(small, 0o755)
    write_users(os.path.join(small, "users"), 0)
    sizes = {}
    for name, directory in (("1 user", small), ("100000 users", mid)):
        server = Fingerd("fingerd", directory)
        server.start()
        try:
            sizes[name] = rss_mib(worker_pid(server.proc.pid))
        finally:
            server.stop()
    lines.append(f"- worker resident memory: {sizes['1 user']:.1f} MiB with 1 user, "
                 f"{sizes['100000 users']:.1f} MiB with 100,000 users.")

    server = Fingerd("fingerd", small, max_connections="4096", request_timeout="60")
    server.start()
    try:
        alone = run_point(server, 16, args.queries, loadgen)
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        try:
            beside = run_point(server, 16, args.queries, loadgen)
        finally:
            for s in idle:
                s.close()
        lines.append(f"- 16 clients alone: p99 {alone['p99']:.2f} ms; beside 300 idle "
                     f"connections: p99 {beside['p99']:.2f} ms (a change of "
                     f"{beside['p99'] - alone['p99']:+.2f} ms).")
    finally:
        server.stop()

    server = Fingerd("fingerd", small)
    server.start()
    try:
        flood = burst(server.port, 2000)
        lines.append(f"- 2,000 connections at once (max_connections = 256): "
                     f"{flood['answered']} answered, {flood['busy']} told busy, "
                     f"{flood['other']} other, {flood['hanging']} left hanging.")
        worker = worker_pid(server.proc.pid)
        before = rss_mib(worker)
        garbage(server.port, 5000)
        after = rss_mib(worker)
        lines.append(f"- worker resident memory before and after 5,000 connections of "
                     f"garbage: {before:.1f} MiB, {after:.1f} MiB.")
    finally:
        server.stop()

    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
