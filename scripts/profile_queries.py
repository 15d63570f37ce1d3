#!/usr/bin/env python3
"""Profile fingerd's per-query path: where a finger query's server time goes.

Runs the finger service in this process on a loopback port (no privilege
separation; the per-query path is the same), sends QUERIES queries from a
client process, and prints the functions of the reading thread by own time.
Then it times the same path with the socket's calls replaced by stubs: the
Python part of a query alone, without the profiler's overhead or the
kernel's share.

    python3 scripts/profile_queries.py [QUERIES]
"""

import cProfile
import multiprocessing
import os
import pstats
import socket
import sys
import tempfile
import threading
import time
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fingerd.config import parse_config  # noqa: E402
from fingerd.metrics import Metrics  # noqa: E402
from fingerd.process.listeners import bind_all  # noqa: E402
from fingerd.serving.assembly import Service  # noqa: E402
from fingerd.serving.loop import Connection, ServingLoop  # noqa: E402
from fingerd.users.store import UserStore  # noqa: E402


def client(port, count):
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"alice\r\n")
            while s.recv(4096):
                pass


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "users"), "w") as f:
        f.write("alice:Happy and well\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = parse_config(f"[fingerd]\nusers_file = users\n[finger]\nlisten = 127.0.0.1:{port}\n"
                          "[setter]\nlisten = 127.0.0.1:0\n[metrics]\nlisten =\n"
                          .replace("127.0.0.1:0", f"127.0.0.1:{port + 1}"),
                          os.path.join(work, "fingerd.conf"))
    metrics = Metrics()
    store = UserStore(config.users_file, metrics)
    store.load()
    profile = cProfile.Profile()
    original = ServingLoop.serve_forever

    def profiled(self):
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    ServingLoop.serve_forever = profiled
    service = Service(config, bind_all(config), store, metrics)
    service.start()
    worker = multiprocessing.Process(target=client, args=(port, count))
    worker.start()
    worker.join()
    stats = pstats.Stats(profile)
    total = stats.total_tt
    print(f"{count} queries, {total / count * 1e6:.1f} µs of profiled reading-thread time "
          "a query (profiling roughly doubles it)\n")
    stats.sort_stats("tottime").print_stats(18)
    ServingLoop.serve_forever = original
    print(f"Python part of a query, socket calls stubbed: "
          f"{python_part(service._servers[0]):.2f} µs (best of 7 runs of 100,000)")
    service.stop()


class StubSocket:
    """A connection whose query is there at once and whose answer always fits."""

    __slots__ = ()

    def fileno(self):
        return -1

    def recv(self, size, flags=0):
        return b"alice\r\n"

    def send(self, data, flags=0):
        return len(data)

    def close(self):
        pass


def python_part(server, runs=100_000):
    """µs of one query's path from its accept to its close, minus the system calls."""
    gate = server.service.gate
    peer = ("127.0.0.1", 1)

    def one():
        gate.enter("127.0.0.1")
        now = time.monotonic()
        server._read(Connection(StubSocket(), peer, "127.0.0.1", now, now + 10))

    return min(timeit.repeat(one, number=runs, repeat=7)) / runs * 1e6


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
