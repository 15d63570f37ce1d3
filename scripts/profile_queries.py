#!/usr/bin/env python3
"""Profile fingerd's per-request path: where a finger query's (or a web request's) server
time goes.

Runs fingerd's services in this process on loopback ports (no privilege
separation; the per-request path is the same), sends QUERIES requests one
after another from a client process, and profiles the reading thread of the
service asked. It prints the time a request spent in the thread apart from
waiting in epoll, split into the socket's system calls and the Python
around them, then the functions by own time. Then it times the same path
with the socket's calls replaced by stubs: the Python part of a request
alone, without the profiler's overhead or the kernel's share.

    python3 scripts/profile_queries.py [QUERIES] [--web PATH]

``--web /users/alice`` profiles the web directory's GET of PATH instead of
the finger query ``alice``.
"""

from __future__ import annotations

import argparse
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
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fingerd.config import Config, parse_config  # noqa: E402
from fingerd.metrics import Metrics  # noqa: E402
from fingerd.process.parent.listeners import bind_all  # noqa: E402
from fingerd.serving.assembly import Service  # noqa: E402
from fingerd.serving.loop import Connection, ServingLoop  # noqa: E402
from fingerd.users.store import UserStore  # noqa: E402

#: cProfile's names of the calls that wait for something to do rather than work.
_WAITING = ("poll' of 'select.epoll",)
#: cProfile's names of calls that are one system call each (the socket's methods).
_SYSTEM_CALLS = "of '_socket.socket' objects"


def client(port: int, request: bytes, count: int) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(request)
            while s.recv(65536):
                pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def services_config(ports: dict[str, int], work: str) -> tuple[Config, UserStore, Metrics]:
    """fingerd's configuration for the finger, setter and web services on loopback
    ``ports`` (metrics off), over a users file of one user, alice, in the directory
    ``work``; and its loaded store and metrics, for ``Service``."""
    with open(os.path.join(work, "users"), "w") as f:
        f.write("alice:Happy and well\n")
    config = parse_config(
        "[fingerd]\nusers_file = users\n"
        f"[finger]\nlisten = 127.0.0.1:{ports['finger']}\n"
        f"[setter]\nlisten = 127.0.0.1:{ports['setter']}\n[metrics]\nlisten =\n"
        f"[web]\nlisten = 127.0.0.1:{ports['web']}\n",
        os.path.join(work, "fingerd.conf"))
    metrics = Metrics()
    store = UserStore(config.users_file, metrics)
    store.load()
    return config, store, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("queries", nargs="?", type=int, default=20000)
    parser.add_argument("--web", metavar="PATH",
                        help="profile a GET of PATH from the web directory instead")
    args = parser.parse_args()
    count = args.queries
    if args.web:
        name = "web"
        request = f"GET {args.web} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    else:
        name, request = "finger", b"alice\r\n"
    ports = {service: free_port() for service in ("finger", "setter", "web")}
    work = tempfile.TemporaryDirectory(prefix="fingerd-profile-")
    config, store, metrics = services_config(ports, work.name)
    profile = cProfile.Profile()
    original = ServingLoop.serve_forever

    def profiled(self: ServingLoop) -> None:
        if self.service.name != name:
            original(self)
            return
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    ServingLoop.serve_forever = profiled  # type: ignore[method-assign]
    service = Service(config, bind_all(config), store, metrics)
    service.start()
    worker = multiprocessing.Process(target=client, args=(ports[name], request, count))
    worker.start()
    worker.join()
    ServingLoop.serve_forever = original  # type: ignore[method-assign]
    report(pstats.Stats(profile), count)
    server = next(s for s in service._servers if s.service.name == name)
    print(f"Python part of a request, socket calls stubbed: "
          f"{python_part(server, request):.2f} µs (best of 7 runs of 20,000)")
    service.stop()
    work.cleanup()


def report(stats: pstats.Stats, count: int) -> None:
    """Per request: the thread's time apart from waiting, its system calls and its
    Python; then the functions by own time, waiting left out."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    busy = system = 0.0
    for key, (_cc, _nc, own, _cum, _callers) in list(table.items()):
        function = key[2]
        if any(name in function for name in _WAITING):
            del table[key]
            continue
        busy += own
        if _SYSTEM_CALLS in function:
            system += own
    print(f"{count} requests; a request, in the reading thread, waiting in epoll left out: "
          f"{busy / count * 1e6:.1f} µs, of which {system / count * 1e6:.1f} µs in the "
          f"socket's system calls and {(busy - system) / count * 1e6:.1f} µs of Python "
          "(profiling roughly doubles the Python part)\n")
    stats.sort_stats("tottime").print_stats(18)


class StubSocket:
    """A connection whose request is there at once, whose answer always fits and whose
    client has closed once the request is read."""

    __slots__ = ("request",)

    def __init__(self, request: bytes) -> None:
        self.request = request

    def fileno(self) -> int:
        return -1

    def recv(self, size: int, flags: int = 0) -> bytes:
        data, self.request = self.request, b""
        return data

    def send(self, data: bytes, flags: int = 0) -> int:
        return len(data)

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def python_part(server: ServingLoop, request: bytes, runs: int = 20_000) -> float:
    """µs of one request's path from its accept to its close, minus the system calls."""
    gate = server.service.gate
    peer = ("127.0.0.1", 1)

    def one() -> None:
        gate.enter("127.0.0.1")
        now = time.monotonic()
        server._read(Connection(StubSocket(request), -1, peer, "127.0.0.1", now, now + 10))

    return min(timeit.repeat(one, number=runs, repeat=7)) / runs * 1e6


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
