#!/usr/bin/env python3
"""Benchmark fingerd against the Twisted tutorial's server, uvloop, a ThreadingTCPServer and C.

One TCP connection a query, every answer checked. For each number of
concurrent clients the servers are run in turn, round after round
(interleaved), and each point reports queries/s, latency percentiles,
errors and the server's CPU time per query read from /proc (parent and
worker together for fingerd). Writes a Markdown table and a PNG chart.

    python3 scripts/bench.py [--clients 1,16,128] [--queries 50000] [--rounds 5] [--web]

With --web, fingerd's web directory is measured beside them: GET
/api/users/NAME (JSON) and GET /users/NAME (the HTML page), each a request
on its own connection, every reply checked (status line and body).

``--servers`` also takes ``python-floor``, the least a Python server does a
query (baselines/python_floor.py): what is fingerd's own above CPython's.

Needs Twisted, uvloop and matplotlib (pip install '.[bench]'). Loopback only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICKS = os.sysconf("SC_CLK_TCK")
USER, STATUS = b"alice", b"Happy and well"
QUERY, ANSWER = USER + b"\r\n", STATUS + b"\r\n"
#: Most bytes of a reply a benchmark client keeps.
MAX_REPLY = 4096


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree_cpu(pid):
    """``(user, system)`` CPU seconds used so far by ``pid`` and its children."""
    user = system = 0.0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / TICKS
            system += int(fields[12]) / TICKS
        except OSError:
            pass
    return user, system


#: With two cores or more, servers run on one and the C client on another, so that
#: neither preempts the other and runs measure the servers rather than the scheduler.
SERVER_CPU, CLIENT_CPU = 0, 1


def pinned(cpu):
    """A taskset prefix that keeps a command on ``cpu``, when that is possible."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def answered(reply, expected):
    """Whether ``reply`` is ``expected``: bytes, or ``(start, end)`` for a reply that begins
    and ends so (HTTP: the status line and the body, the Date between them changing)."""
    if isinstance(expected, bytes):
        return reply == expected
    start, end = expected
    return reply is not None and len(reply) >= len(start) + len(end) and \
        reply.startswith(start) and reply.endswith(end)


def ask(port, query, timeout=2):
    """The whole reply to ``query`` on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(query)
        reply = b""
        while len(reply) < MAX_REPLY:
            chunk = s.recv(MAX_REPLY)
            if not chunk:
                break
            reply += chunk
        return reply


def wait_for_answer(port, deadline=30.0, query=QUERY, expected=ANSWER):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if answered(ask(port, query), expected):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not answer")


#: Most bytes of a server's log shown when it does not start.
LOG_TAIL_BYTES = 2000


class Server:
    """A server under test, started and ended by its pid; ``query`` is what each client
    sends, ``expected`` what it must get back (see ``answered``)."""

    query = QUERY
    expected = ANSWER

    def __init__(self, name, directory):
        self.name = name
        self.dir = directory
        self.port = free_port()
        self.users = os.path.join(directory, "users")
        self.proc = None
        self.log = None

    def command(self):
        raise NotImplementedError

    def start(self):
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(pinned(SERVER_CPU) + self.command(), cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        try:
            wait_for_answer(self.port, query=self.query, expected=self.expected)
        except RuntimeError as exc:
            self.log.flush()
            with open(self.log.name, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL_BYTES))
                tail = f.read(LOG_TAIL_BYTES).decode("utf-8", "replace")
            raise RuntimeError(f"{self.name}: {exc}; its log ends:\n{tail}") from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()


class Fingerd(Server):
    """fingerd on free loopback ports; ``settings`` go to [fingerd], ``finger`` and
    ``setter`` to those sections."""

    def __init__(self, name, directory, setter=None, finger=None, **settings):
        super().__init__(name, directory)
        self.config = os.path.join(directory, "fingerd.conf")
        self.finger_port = self.port
        self.setter_port = free_port()
        self.metrics_port = free_port()
        self.log_file = os.path.join(directory, "fingerd.log")
        self.web_port = free_port()
        fingerd = {"user": "nobody", "pidfile": os.path.join(directory, "fingerd.pid"),
                   "users_file": self.users, "max_connections": "4096",
                   "log_file": self.log_file}
        fingerd.update(settings)
        finger = {"listen": f"127.0.0.1:{self.port}", **(finger or {})}
        setter = {"listen": f"127.0.0.1:{self.setter_port}", **(setter or {})}
        with open(self.config, "w") as f:
            f.write("[fingerd]\n" + "".join(f"{k} = {v}\n" for k, v in fingerd.items()))
            f.write("[finger]\n" + "".join(f"{k} = {v}\n" for k, v in finger.items()))
            f.write("[setter]\n" + "".join(f"{k} = {v}\n" for k, v in setter.items()))
            f.write(f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n")
            f.write(f"[web]\nlisten = 127.0.0.1:{self.web_port}\n")

    def command(self):
        return [sys.executable, "-m", "fingerd", "-n", "-c", self.config]

    def worker_pid(self):
        """The worker's pid (the parent's one child), or the parent's when there is none."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            return pid

    def metrics(self):
        """``{sample name with labels: value}`` from the metrics endpoint; empty on failure."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode("utf-8", "replace")
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    samples[name] = float(value)
                except ValueError:
                    pass
        return samples


class FingerdWeb(Fingerd):
    """fingerd's web directory asked for ``path``: every reply must be 200 with the body
    of the first one, which must show the user's status."""

    def __init__(self, name, directory, path):
        super().__init__(name, directory)
        self.port = self.web_port
        self.query = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    def start(self):
        self.expected = (b"HTTP/1.1 200 OK\r\n", b"")
        super().start()
        body = ask(self.port, self.query).partition(b"\r\n\r\n")[2]
        if b"Status: " + STATUS not in body:
            raise RuntimeError(f"{self.name}: unexpected answer {body[:200]!r}")
        self.expected = (b"HTTP/1.1 200 OK\r\n", b"\r\n\r\n" + body)


class Twisted(Server):
    def command(self):
        return [sys.executable, os.path.join(HERE, "baselines", "twisted_finger.py"),
                str(self.port), self.users]


class Uvloop(Server):
    """A protocol-API asyncio server on uvloop (baselines/uvloop_finger.py)."""

    def command(self) -> list:
        return [sys.executable, os.path.join(HERE, "baselines", "uvloop_finger.py"),
                str(self.port), self.users]


class PythonFloor(Server):
    """The least a Python server does a query (baselines/python_floor.py)."""

    def command(self) -> list:
        return [sys.executable, os.path.join(HERE, "baselines", "python_floor.py"),
                str(self.port), self.users]


class EpollC(Server):
    """The minimal C server (baselines/epoll_finger.c): the floor for CPU per query."""

    def command(self):
        binary = compile_c(os.path.join(HERE, "baselines", "epoll_finger.c"), self.dir)
        if binary is None:
            raise RuntimeError("cannot build the C baseline; leave it out with --servers")
        return [binary, str(self.port), self.users]


class Threading(Server):
    def command(self):
        return [sys.executable, os.path.join(HERE, "baselines", "threading_finger.py"),
                str(self.port), self.users]


def open_query(sel, port, data=QUERY):
    """Start one request on a new non-blocking connection, watched by ``sel``."""
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_WRITE, [time.monotonic(), data, b""])


def advance(sel, key, mask):
    """One step of a request: None while it goes on, else ``(reply, seconds)``, the reply
    None when the connection failed. The client's end stays open until the server has
    answered and closed; then it is closed."""
    s, state = key.fileobj, key.data
    try:
        if mask & selectors.EVENT_WRITE:
            state[1] = state[1][s.send(state[1]):]
            if not state[1]:
                sel.modify(s, selectors.EVENT_READ, state)
            return None
        chunk = s.recv(4096)
        if chunk and len(state[2]) < MAX_REPLY:
            state[2] += chunk
            return None
        reply = state[2]
    except OSError:
        reply = None
    sel.unregister(s)
    s.close()
    return reply, time.monotonic() - state[0]


def keep_in_flight(port, concurrency, count, expected, deadline, request=lambda i: QUERY,
                   request_timeout=None):
    """Send ``count`` requests (the i-th is ``request(i)``), ``concurrency`` at a time,
    each on a new connection, until ``deadline``; ``(latencies, errors)``, an error being
    a reply other than ``expected``, a request older than ``request_timeout`` or one
    never finished."""
    sel = selectors.DefaultSelector()
    latencies = []
    errors = 0
    started = min(concurrency, count)
    for i in range(started):
        open_query(sel, port, request(i))
    in_flight = started
    while in_flight and time.monotonic() < deadline:
        for key, mask in sel.select(1):
            done = advance(sel, key, mask)
            if done is None:
                continue
            reply, seconds = done
            if answered(reply, expected):
                latencies.append(seconds)
            else:
                errors += 1
            in_flight -= 1
            if started < count:
                open_query(sel, port, request(started))
                started += 1
                in_flight += 1
        if request_timeout is not None:
            now = time.monotonic()
            for key in list(sel.get_map().values()):
                if now - key.data[0] > request_timeout:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    errors += 1
                    in_flight -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return latencies, errors + in_flight + (count - started)


def client_process(port, concurrency, count, start_at, results, query, expected):
    """Keep ``concurrency`` queries in flight until ``count`` are done; report latencies."""
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.monotonic()
    latencies, errors = keep_in_flight(port, concurrency, count, expected, began + 300,
                                       request=lambda i: query)
    results.put((latencies, errors, time.monotonic() - began))


def compile_c(source, directory):
    """The binary built from ``source`` in ``directory``; None (with a warning) when it
    cannot be built."""
    binary = os.path.join(directory, os.path.splitext(os.path.basename(source))[0])
    result = subprocess.run(["cc", "-O2", "-o", binary, source], capture_output=True,
                            text=True)
    if result.returncode != 0:
        print(f"cannot build {source}:\n{result.stderr}", file=sys.stderr)
        return None
    return binary


def build_loadgen(directory):
    """The C load generator, or None: the slower Python client is used instead."""
    return compile_c(os.path.join(HERE, "loadgen.c"), directory)


def run_loadgen(loadgen, server, conc, share, start_at):
    """``(latencies, errors, elapsed)`` from C load generator processes started together."""
    expected = server.expected
    check = [expected.decode()] if isinstance(expected, bytes) else \
        [expected[1].decode(), expected[0].decode()]
    procs = [subprocess.Popen(pinned(CLIENT_CPU) + [loadgen, str(server.port), str(c), str(n),
                                                    repr(start_at), server.query.decode(),
                                                    *check],
                              stdout=subprocess.PIPE, text=True)
             for c, n in zip(conc, share)]
    gathered = []
    for proc in procs:
        out, _ = proc.communicate(timeout=400)
        head, *rest = out.split("\n")
        errors, elapsed = head.split()
        gathered.append(([int(x) / 1e6 for x in rest if x], int(errors), float(elapsed)))
    return gathered


def run_point(server, clients, queries, loadgen=None):
    # One C client process keeps up with any server here and leaves the other core
    # to the server; the Python client needs two.
    processes = 1 if loadgen else min(clients, 2)
    start_at = time.time() + 0.5
    clients_before = client_cpu()
    share = [queries // processes + (i < queries % processes) for i in range(processes)]
    conc = [clients // processes + (i < clients % processes) for i in range(processes)]
    cpu_before = None
    if loadgen:
        result = {}
        runner = threading.Thread(target=lambda: result.update(
            got=run_loadgen(loadgen, server, conc, share, start_at)))
        runner.start()
        while time.time() < start_at:
            time.sleep(0.001)
        cpu_before = process_tree_cpu(server.proc.pid)
        runner.join()
        gathered = result["got"]
    else:
        results = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=client_process,
                                           args=(server.port, conc[i], share[i], start_at,
                                                 results, server.query, server.expected))
                   for i in range(processes)]
        for w in workers:
            w.start()
        while time.time() < start_at:
            time.sleep(0.001)
        cpu_before = process_tree_cpu(server.proc.pid)
        gathered = [results.get(timeout=400) for _ in workers]
        for w in workers:
            w.join(30)
    user, system = (after - before for after, before in
                    zip(process_tree_cpu(server.proc.pid), cpu_before))
    client_seconds = client_cpu() - clients_before
    latencies = sorted(lat for got in gathered for lat in got[0])
    errors = sum(got[1] for got in gathered)
    elapsed = max(got[2] for got in gathered)
    done = len(latencies)

    def pct(p):
        return latencies[min(done - 1, int(p * done))] * 1000 if done else float("nan")

    return {"server": server.name, "clients": clients, "qps": done / elapsed,
            "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] * 1000 if done else 0,
            "errors": errors, "cpu_us": (user + system) / max(done, 1) * 1e6,
            "user_us": user / max(done, 1) * 1e6,
            "client_busy": client_seconds / elapsed * 100}


def client_cpu():
    """CPU seconds used by the finished client processes so far; a point's clients are
    the only children that end during it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_point(points):
    """The median of each figure over the rounds, and the range of p99, the noisiest."""
    best = {key: statistics.median(p[key] for p in points)
            for key in ("qps", "p50", "p99", "max", "cpu_us", "user_us", "client_busy")}
    best.update(server=points[0]["server"], clients=points[0]["clients"],
                errors=sum(p["errors"] for p in points),
                p99_range=(min(p["p99"] for p in points), max(p["p99"] for p in points)))
    return best


def machine():
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), platform.machine())
    return (f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def table(rows: list, baseline: dict, floor: dict, uvloop: dict | None = None) -> str:
    """The Markdown table; ratios are to the Twisted server and, for CPU, to the C server
    and to uvloop."""
    uvloop = uvloop or {}
    out = [("| server | clients | queries/s | p50 ms | p99 ms (range over rounds) | max ms | "
            "errors | server CPU µs/query (user+system) | CPU vs Twisted | q/s vs Twisted | "
            "p99 vs Twisted | CPU vs C | CPU vs uvloop | client core busy |"),
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def ratio(row, base, key):
        return f"{row[key] / base[key]:.2f}" if base else "-"

    for r in rows:
        base, c, uv = (of.get(r["clients"]) for of in (baseline, floor, uvloop))
        low, high = r["p99_range"]
        out.append(f"| {r['server']} | {r['clients']} | {r['qps']:.0f} | {r['p50']:.2f} | "
                   f"{r['p99']:.2f} ({low:.2f}-{high:.2f}) | {r['max']:.1f} | {r['errors']} | "
                   f"{r['cpu_us']:.0f} ({r['user_us']:.0f}+{r['cpu_us'] - r['user_us']:.0f}) | "
                   f"{ratio(r, base, 'cpu_us')} | {ratio(r, base, 'qps')} | "
                   f"{ratio(r, base, 'p99')} | {ratio(r, c, 'cpu_us')} | "
                   f"{ratio(r, uv, 'cpu_us')} | "
                   f"{r['client_busy']:.0f}% |")
    return "\n".join(out)


def chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        xs = [r["clients"] for r in mine]
        for ax, key in zip(axes, ("qps", "cpu_us", "p99")):
            ax.plot(xs, [r[key] for r in mine], marker="o", label=name)
    for ax, title in zip(axes, ("queries/s", "server CPU µs per query", "p99 latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,16,128")
    parser.add_argument("--queries", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    parser.add_argument("--servers",
                        default="fingerd,fingerd-accesslog,twisted,uvloop,threading,c-epoll")
    parser.add_argument("--web", action="store_true",
                        help="also fingerd-web-api and fingerd-web-page: the web directory")
    args = parser.parse_args()
    if args.web:
        args.servers += ",fingerd-web-api,fingerd-web-page"
    clients = [int(c) for c in args.clients.split(",")]
    work = tempfile.mkdtemp(prefix="fingerd-bench-")
    os.chmod(work, 0o755)
    makers = {
        "fingerd": lambda d: Fingerd("fingerd", d),
        "fingerd-accesslog": lambda d: Fingerd("fingerd-accesslog", d, access_log="yes"),
        "twisted": lambda d: Twisted("twisted", d),
        "uvloop": lambda d: Uvloop("uvloop", d),
        "threading": lambda d: Threading("threading", d),
        "c-epoll": lambda d: EpollC("c-epoll", d),
        "python-floor": lambda d: PythonFloor("python-floor", d),
        "fingerd-web-api": lambda d: FingerdWeb("fingerd-web-api", d,
                                                "/api/users/" + USER.decode()),
        "fingerd-web-page": lambda d: FingerdWeb("fingerd-web-page", d,
                                                 "/users/" + USER.decode()),
    }
    servers = []
    for name in args.servers.split(","):
        directory = os.path.join(work, name)
        os.mkdir(directory, 0o755)
        with open(os.path.join(directory, "users"), "wb") as f:
            f.write(USER + b":" + STATUS + b"\n" + b"".join(b"user%d:status %d\n" % (i, i)
                                                           for i in range(1000)))
        servers.append(makers[name](directory))
    loadgen = build_loadgen(work)
    rows = []
    try:
        for server in servers:
            server.start()
        for n in clients:
            points = {s.name: [] for s in servers}
            for _ in range(args.rounds):
                for server in servers:
                    points[server.name].append(run_point(server, n, args.queries, loadgen))
                    print(f"  {server.name:>14} {n:>4} clients: "
                          f"{points[server.name][-1]['qps']:8.0f} q/s "
                          f"{points[server.name][-1]['cpu_us']:6.0f} µs/q", file=sys.stderr)
            rows.extend(median_point(points[s.name]) for s in servers)
    finally:
        for server in servers:
            server.stop()
    baseline = {r["clients"]: r for r in rows if r["server"] == "twisted"}
    floor = {r["clients"]: r for r in rows if r["server"] == "c-epoll"}
    uvloop = {r["clients"]: r for r in rows if r["server"] == "uvloop"}
    rows.sort(key=lambda r: (list(makers).index(r["server"]), r["clients"]))
    client = "the C load generator (scripts/loadgen.c)" if loadgen else "the Python client"
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {args.queries} queries a "
            f"point, median of {args.rounds} interleaved rounds, load from {client} in "
            f"{1 if loadgen else min(clients[-1], 2)} process(es).\n\n"
            f"{table(rows, baseline, floor, uvloop)}\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    chart(rows, os.path.join(args.out, "latest.png"))
    print(text)


if __name__ == "__main__":
    main()
