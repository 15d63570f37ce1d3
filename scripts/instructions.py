#!/usr/bin/env python3
"""Count the instructions a finger query costs the thread that serves it, under valgrind.

scripts/bench.py times queries, and at one client its rounds differ by
±30% on a shared machine: a change worth a few percent cannot show there.
An instruction count does not move with the machine's load. Each server
runs under callgrind twice, answering FEW and then MANY queries from one
client (one connection a query, every answer checked); the serving thread's
instructions in the second run less those in the first, over the difference
in queries, are a query's. The serving thread is the one that grew most.

fingerd runs its services in one process, as profile_queries.py does: no
privilege separation, the same per-query path. The baselines are the C
epoll server and the least a Python server does (baselines/python_floor.py).
``--root`` counts the fingerd of another checkout, to compare a change with
the code before it; ``--off`` counts fingerd beside it with each mechanism
named turned off alone by its patch of scripts/ablation_launcher.py (those
that act on the serving thread: in process the worker's own start is not run).

    python3 scripts/instructions.py [--few 1000] [--many 5000]
        [--servers fingerd,python-floor,c-epoll] [--root DIR] [--off MECHANISM,...]

Needs valgrind (apt-get install valgrind) and a C compiler. Loopback only.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUERY, ANSWER = b"alice\r\n", b"Happy and well\r\n"
#: Where a server's command takes its port.
PORT = "PORT"
#: Seconds a server under valgrind may take to start answering.
START_SECONDS = 120.0


def serve_fingerd(root: str, work: str, port: int, off: str) -> None:
    """fingerd's services in this process, the finger service on ``port`` and its files
    in a directory of their own in ``work``, until SIGTERM; with the mechanism ``off``
    turned off (empty: none)."""
    sys.path.insert(0, root)
    import fingerd  # noqa: F401  (from ``root``, before profile_queries puts this checkout first)

    sys.path.insert(0, HERE)
    if off:  # the launcher only then: it imports modules a checkout of --root may lack
        from ablation_launcher import PATCHES
        PATCHES[off]()
    from profile_queries import free_port, services_config

    from fingerd.process.parent.listeners import bind_all
    from fingerd.serving.assembly import Service

    config, store, metrics = services_config(
        {"finger": port, "setter": free_port(), "web": free_port()},
        tempfile.mkdtemp(dir=work))
    Service(config, bind_all(config), store, metrics).start()
    # SIGTERM's default action ends it: valgrind then writes its counts, which it does
    # not reliably for an exit made from a Python signal handler.
    threading.Event().wait()


def ask(port: int) -> bytes:
    """The answer to QUERY, up to one byte more than ANSWER's length."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(QUERY)
        reply = b""
        while len(reply) <= len(ANSWER) and (chunk := s.recv(4096)):
            reply += chunk
        return reply


def counted(command: list[str], queries: int, work: str) -> dict[str, int]:
    """Instructions by thread of ``command`` (its word PORT made a free port) while it
    answers one query to show it is up, then ``queries`` more."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = os.path.join(work, f"callgrind.{queries}")
    server = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                               f"--callgrind-out-file={out}",
                               *(str(port) if word == PORT else word for word in command)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                reply = ask(port)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{command[-2:]} did not answer under valgrind") from None
                time.sleep(0.2)
        for _ in range(queries):
            if reply != ANSWER:
                raise RuntimeError(f"unexpected answer {reply!r}")
            reply = ask(port)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    totals = {}
    for path in glob.glob(out + "-*"):
        with open(path) as f:
            text = f.read()
        thread, total = re.search(r"^thread: (\d+)", text, re.M), \
            re.search(r"^totals: (\d+)", text, re.M)
        if thread and total:
            totals[thread.group(1)] = int(total.group(1))
        os.remove(path)
    return totals


def per_query(command: list[str], few: int, many: int, work: str) -> float:
    before, after = counted(command, few, work), counted(command, many, work)
    growth = max(after[thread] - before.get(thread, 0) for thread in after)
    return growth / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--few", type=int, default=1000)
    parser.add_argument("--many", type=int, default=5000)
    parser.add_argument("--servers", default="fingerd,python-floor,c-epoll")
    parser.add_argument("--root", default=os.path.dirname(HERE),
                        help="the checkout whose fingerd is counted (default: this one)")
    parser.add_argument("--off", default="", metavar="MECHANISM,...",
                        help="also count fingerd with each of these turned off, alone")
    parser.add_argument("--serve-fingerd", nargs=4, metavar=("ROOT", "WORK", "PORT", "OFF"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fingerd:
        root, work, port, off = args.serve_fingerd
        serve_fingerd(root, work, int(port), off)
    with tempfile.TemporaryDirectory(prefix="fingerd-instructions-") as work:
        count_all(args, work)


def count_all(args: argparse.Namespace, work: str) -> None:
    """Count each server of ``args.servers`` and print the table, working in ``work``.
    The launcher is imported here, not above: it imports this checkout's fingerd, which
    ``--serve-fingerd`` must take from ``--root``."""
    sys.path.insert(0, HERE)
    from ablation_launcher import PATCHES
    offs = [off for off in args.off.split(",") if off]
    unknown = [off for off in offs if off not in PATCHES]
    if unknown:
        raise SystemExit(f"--off: no such mechanism {', '.join(unknown)} "
                         f"(one of {', '.join(PATCHES)})")
    users = os.path.join(work, "users")
    with open(users, "w") as f:
        f.write("alice:Happy and well\n")
    python = os.path.realpath(sys.executable)  # valgrind follows no shim's exec
    c_server = os.path.join(work, "epoll_finger")
    fingerd = [python, os.path.abspath(__file__), "--serve-fingerd", os.path.abspath(args.root),
               work, PORT]
    commands = {
        "fingerd": [*fingerd, ""],
        **{f"fingerd-without-{off}": [*fingerd, off] for off in offs},
        "python-floor": [python, os.path.join(HERE, "baselines", "python_floor.py"), PORT,
                         users],
        "c-epoll": [c_server, PORT, users],
    }
    names = args.servers.split(",") + [name for name in commands if "-without-" in name]
    if "c-epoll" in names:
        subprocess.run(["cc", "-O2", "-o", c_server,
                        os.path.join(HERE, "baselines", "epoll_finger.c")], check=True)
    counts = {name: per_query(commands[name], args.few, args.many, work) for name in names}
    print(f"Instructions a query, serving thread; {args.many - args.few} queries counted")
    width = max(map(len, counts))
    for name, count in counts.items():
        bases = ("python-floor", "c-epoll", *(("fingerd",) if "-without-" in name else ()))
        ratios = "".join(f", {count / counts[base]:.2f} × {base}" for base in bases
                         if base in counts and base != name)
        print(f"  {name:{width}} {count:9,.0f}{ratios}")


if __name__ == "__main__":
    main()
