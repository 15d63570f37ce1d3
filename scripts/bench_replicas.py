#!/usr/bin/env python3
"""Benchmark fingerd replicas on one Redis behind HAProxy (README, "Several hosts").

Two figures:

- queries/s, latency and CPU per query asking one fingerd directly, and through
  HAProxy (init/haproxy-fingerd.cfg, PROXY v2) to 1 and to 2 replicas; one TCP
  connection a query, every answer checked, CPU read from /proc for fingerd
  (parents and workers) and HAProxy apart;
- the time from a set through replica 1's setter to replica 2 answering it
  (median and p99 over ``--sets`` sets), and the setter's own time to ``OK``.

    python3 scripts/bench_replicas.py [--clients 16] [--queries 20000] [--rounds 3]
                                      [--sets 1000]

Needs redis-server and haproxy (Debian packages) and the redis extra. As root,
fingerd runs privilege separated, as in production. Loopback only.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench import (
    ANSWER,
    CLIENT_CPU,
    QUERY,
    ROOT,
    SERVER_CPU,
    STATUS,
    USER,
    build_loadgen,
    free_port,
    keep_in_flight,
    machine,
    pinned,
    process_tree_cpu,
    run_loadgen,
)

sys.path.insert(0, ROOT)
from tests.support.engines import HAProxy  # noqa: E402  (the tests' engines, shared)

#: A PROXY v1 header for asking a replica directly, as HAProxy would.
HEADER = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 79\r\n"


def ask(port, data, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def wait(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Process:
    """A command on the server core, ended by its pid."""

    def __init__(self, command, log):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(pinned(SERVER_CPU) + command, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def start_redis(directory):
    port = free_port()
    redis = Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                     directory, "--save", "", "--appendonly", "yes", "--appendfsync",
                     "always"], os.path.join(directory, "redis.log"))
    redis.url = f"redis://127.0.0.1:{port}/0"
    wait(lambda: ask(port, b"PING\r\nQUIT\r\n").startswith(b"+PONG"), "redis-server")
    return redis


def start_fingerd(directory, redis_url, proxied):
    os.makedirs(directory, mode=0o755)
    port, setter, metrics = free_port(), free_port(), free_port()
    config = os.path.join(directory, "fingerd.conf")
    with open(config, "w") as f:
        f.write(f"[fingerd]\nuser = nobody\npidfile = {directory}/fingerd.pid\n"
                f"users_file = {directory}/users\nmax_connections = 4096\n"
                f"log_file = {directory}/fingerd.log\n"
                f"[finger]\nlisten = 127.0.0.1:{port}\n"
                f"proxy_protocol = {'yes' if proxied else 'no'}\n"
                f"[setter]\nlisten = 127.0.0.1:{setter}\nrate_limit = 0\n"
                f"[metrics]\nlisten = 127.0.0.1:{metrics}\n"
                f"[store]\nbackend = redis\nredis_url = {redis_url}\nredis_prefix = bench\n")
    fingerd = Process([sys.executable, "-m", "fingerd", "-n", "-c", config],
                      os.path.join(directory, "stderr.log"))
    fingerd.port, fingerd.setter = port, setter
    fingerd.query = (HEADER if proxied else b"") + QUERY
    wait(lambda: ask(port, fingerd.query), "fingerd")
    return fingerd


def cpu(processes):
    """CPU seconds so far of each process and its children, summed."""
    return sum(sum(process_tree_cpu(p.proc.pid)) for p in processes)


def measure(port, clients, queries, fingerds, haproxy, loadgen):
    """One run: queries/s, p50/p99 ms, errors, fingerd's and HAProxy's CPU µs a query."""
    start_at = time.time() + 0.3
    before = (cpu(fingerds), cpu([haproxy]) if haproxy else 0.0)
    if loadgen:
        got = run_loadgen(loadgen, port, [clients], [queries], start_at)[0]
        latencies, errors, elapsed = got
    else:
        began = time.monotonic()
        latencies, errors = keep_in_flight(port, clients, queries, ANSWER, began + 300)
        elapsed = time.monotonic() - began
    spent = (cpu(fingerds) - before[0], (cpu([haproxy]) - before[1]) if haproxy else 0.0)
    latencies.sort()
    done = len(latencies)
    return {"qps": done / elapsed, "p50": latencies[done // 2] * 1000,
            "p99": latencies[min(done - 1, int(0.99 * done))] * 1000, "errors": errors,
            "fingerd_us": spent[0] / done * 1e6, "haproxy_us": spent[1] / done * 1e6}


def propagation(first, second, sets):
    """Seconds from sending a set to ``first`` to ``second`` answering it, and to OK."""
    spread, acknowledged = [], []
    for i in range(sets):
        status = f"Set {i}".encode()
        began = time.monotonic()
        reply = ask(first.setter, USER + b"\r\n" + status + b"\r\n")
        acknowledged.append(time.monotonic() - began)
        if reply != b"OK\r\n":
            raise RuntimeError(f"set refused: {reply!r}")
        deadline = began + 5
        while ask(second.port, HEADER + QUERY) != status + b"\r\n":
            if time.monotonic() > deadline:
                raise RuntimeError("a set did not reach the other replica within 5 s")
        spread.append(time.monotonic() - began)
    # Leave the status the query benchmark expects.
    ask(first.setter, USER + b"\r\n" + STATUS + b"\r\n")
    return spread, acknowledged


def percentiles(values):
    values = sorted(values)
    return (statistics.median(values) * 1000,
            values[min(len(values) - 1, int(0.99 * len(values)))] * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", type=int, default=1000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fingerd-bench-replicas-")
    os.chmod(work, 0o755)
    loadgen = build_loadgen(work)
    started = []
    try:
        redis = start_redis(work)
        started.append(redis)
        direct = start_fingerd(os.path.join(work, "direct"), redis.url, proxied=False)
        started.append(direct)
        replicas = [start_fingerd(os.path.join(work, f"r{i}"), redis.url, proxied=True)
                    for i in range(2)]
        started.extend(replicas)
        ask(replicas[0].setter, USER + b"\r\n" + STATUS + b"\r\n")
        for fingerd in (direct, *replicas):
            wait(lambda: ask(fingerd.port, fingerd.query) == ANSWER, "the status everywhere")
        proxies = {}
        for n in (1, 2):
            proxy = HAProxy(work, free_port(), [r.port for r in replicas[:n]], inter="2s")
            proxy.start()
            started.append(proxy)
            if pinned(SERVER_CPU):  # on the server core too, every thread of it
                subprocess.run(["taskset", "-apc", str(SERVER_CPU), str(proxy.proc.pid)],
                               capture_output=True, check=True)
            proxies[n] = proxy
        setups = [("direct", direct.port, [direct], None)] + [
            (f"HAProxy to {n} replica{'s' if n > 1 else ''}", proxies[n].port,
             replicas[:n], proxies[n]) for n in (1, 2)]
        results = {name: [] for name, *_ in setups}
        for _ in range(args.rounds):
            for name, port, fingerds, proxy in setups:
                results[name].append(measure(port, args.clients, args.queries, fingerds,
                                             proxy, loadgen))
        spread, acknowledged = propagation(replicas[0], replicas[1], args.sets)
    finally:
        for process in reversed(started):
            process.stop()
    report(args, results, spread, acknowledged, loadgen)


def report(args, results, spread, acknowledged, loadgen):
    client = "the C load generator (scripts/loadgen.c)" if loadgen else "the Python client"
    print(f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {args.clients} concurrent "
          f"clients from {client} on core {CLIENT_CPU}, fingerd, HAProxy and Redis on core "
          f"{SERVER_CPU}; {args.queries} queries a run, median of {args.rounds} interleaved "
          f"rounds.\n")
    print("| path | queries/s | p50 ms | p99 ms | errors | fingerd CPU µs/query | "
          "HAProxy CPU µs/query |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        m = {key: statistics.median(r[key] for r in runs)
             for key in ("qps", "p50", "p99", "fingerd_us", "haproxy_us")}
        print(f"| {name} | {m['qps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{sum(r['errors'] for r in runs)} | {m['fingerd_us']:.0f} | "
              f"{m['haproxy_us']:.0f} |")
    median, p99 = percentiles(spread)
    ack_median, ack_p99 = percentiles(acknowledged)
    print(f"\nFrom a set sent to replica 1 to replica 2 answering it, over {len(spread)} "
          f"sets: median {median:.2f} ms, p99 {p99:.2f} ms, max {max(spread) * 1000:.2f} ms "
          f"(the set itself, to OK: median {ack_median:.2f} ms, p99 {ack_p99:.2f} ms).")


if __name__ == "__main__":
    main()
