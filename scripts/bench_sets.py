#!/usr/bin/env python3
"""Finger latency and the root parent's answers to signals while statuses are set in a
loop on a 1,000,000-entry users file (issue 12 point 4, issue 13 point 1).

Starts fingerd as bench.py does (its real process model: as root, privilege
separated; the parent and its children pinned to the first core, the clients
to the second, so that the worker and the child writing the users file
compete for one core; with --spread nothing is pinned), with a users file of
1,000,001 entries, and runs two phases of the same length on it:

- idle: no sets;
- sets: one client sets statuses in a loop through the setter, one request a
  new TCP connection, each sent once the previous one was answered. It runs
  as root, whom `[setter] rate_limit` does not ration, and the daemon is
  configured with `rate_limit = 0` (no limit) besides: the loop runs as fast
  as the daemon writes the file.

In both, a finger client asks for one user (`alice`, whom no set touches),
one query a new TCP connection, paced at --finger-rate a second, and records
each answer's latency; and the parent is sent SIGUSR1 every --usr1-every
seconds, the time until its log shows "SIGUSR1: log file reopened" measured
(polled every millisecond), the next signal sent only once that line is
there. The parent's own CPU time (its loop) and that of its children
other than the worker (the writers of the users file, after this change),
live or reaped, are read from /proc.

Before that, the steps of one set are timed in this process on the same
file: those of the former write one by one (reading the file, validating
it, making the edited copy, writing it, the fsyncs and rename), and the
write of this tree whole, where it has one.

    python3 scripts/bench_sets.py [--seconds 30] [--finger-rate 200] [--usr1-every 1]
                                  [--users 1000000] [--spread] [--label after] [--out FILE.md]

Prints a Markdown table; also writes it to --out when given. Loopback only;
every loop bounded in count and time; every process started is ended by its
pid.
"""

import argparse
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench import ANSWER, CLIENT_CPU, QUERY, TICKS, Fingerd, machine  # noqa: E402
from bench_scale import write_users  # noqa: E402

USERS = 1_000_000
USR1_LINE = "SIGUSR1: log file reopened"
#: No request waits longer than this for its answer (a set took up to 9 s before).
REQUEST_TIMEOUT = 30.0


def exchange(port, data, timeout=REQUEST_TIMEOUT):
    """Send ``data`` on a new connection, read to the end; ``(reply, seconds)``, the reply
    None when the connection failed."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(data)
            chunks = []
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        reply = b"".join(chunks)
    except OSError:
        reply = None
    return reply, time.monotonic() - started


def on_client_core(spread):
    if (os.cpu_count() or 1) >= 2 and not spread:
        os.sched_setaffinity(0, {CLIENT_CPU})


def spread_out(pid):
    """Let every thread of ``pid`` and of its children run on any core (bench.py pins
    them to one); children forked later inherit the parent's."""
    cores = set(range(os.cpu_count() or 1))
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [pid] + [int(p) for p in f.read().split()]
    for p in pids:
        for tid in os.listdir(f"/proc/{p}/task"):
            os.sched_setaffinity(int(tid), cores)


def finger_loop(port, rate, seconds, spread, results):
    """Queries for ``alice`` paced at ``rate`` a second for ``seconds``; latencies, errors."""
    on_client_core(spread)
    latencies, errors = [], 0
    interval = 1.0 / rate
    start = time.monotonic()
    end = start + seconds
    tick = start
    while tick < end:
        reply, took = exchange(port, QUERY)
        if reply == ANSWER:
            latencies.append(took)
        else:
            errors += 1
        tick += interval
        pause = tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    results.put(("finger", latencies, errors))


def set_loop(port, users, seconds, spread, results):
    """Set statuses one after the other for ``seconds``; latencies of the OKs, errors."""
    on_client_core(spread)
    latencies, errors, seq = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reply, took = exchange(port, b"user%d\r\nset %d at %.3f\r\n" % (
            (seq * 7919) % users, seq, time.time()))
        seq += 1
        if reply == b"OK\r\n":
            latencies.append(took)
        else:
            errors += 1
    results.put(("sets", latencies, errors))


class LogWatch:
    """Reads what the parent appends to its log file, to time its answer to SIGUSR1."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path)
        self.tail = ""

    def lines_since(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        text = self.tail + data.decode("utf-8", "replace")
        *lines, self.tail = text.split("\n")
        return lines

    def time_usr1(self, pid, timeout=REQUEST_TIMEOUT):
        """Seconds from SIGUSR1 to the parent's log line, None if it never came."""
        self.lines_since()
        started = time.monotonic()
        os.kill(pid, signal.SIGUSR1)
        while time.monotonic() - started < timeout:
            if any(USR1_LINE in line and f"fingerd[{pid}]" in line for line in self.lines_since()):
                return time.monotonic() - started
            time.sleep(0.001)
        return None


def worker_pid(parent):
    """The parent's child that runs as another user than root: the worker (its other
    children, the writers of the users file, run as root)."""
    with open(f"/proc/{parent}/task/{parent}/children") as f:
        for pid in f.read().split():
            try:
                if os.stat(f"/proc/{pid}").st_uid != 0:
                    return int(pid)
            except OSError:
                pass
    raise RuntimeError("no worker found")


def cpu_fields(pid):
    """``(utime, stime, cutime, cstime)`` of ``pid`` in seconds; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0, 0.0, 0.0
    return tuple(int(x) / TICKS for x in fields[11:15])


def parent_cpu(pid, worker):
    """``(own, other children)`` CPU seconds of the parent ``pid`` (user+system): its
    own, and that of its children but ``worker``, the live ones from /proc and the
    ones it reaped from its cutime and cstime. Only differences mean anything."""
    utime, stime, cutime, cstime = cpu_fields(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            live = [int(p) for p in f.read().split() if int(p) != worker]
    except OSError:
        live = []
    return utime + stime, cutime + cstime + sum(sum(cpu_fields(p)[:2]) for p in live)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def run_phase(server, name, users, seconds, finger_rate, usr1_every, with_sets, spread):
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=finger_loop,
                                     args=(server.port, finger_rate, seconds, spread,
                                           results))]
    if with_sets:
        procs.append(multiprocessing.Process(target=set_loop,
                                             args=(server.setter_port, users, seconds,
                                                   spread, results)))
    pid = server.proc.pid
    watch = LogWatch(server.log_path)
    worker = worker_pid(pid)
    cpu_before = parent_cpu(pid, worker)
    for p in procs:
        p.start()
    started = time.monotonic()
    usr1, missed = [], 0
    try:
        while time.monotonic() - started < seconds:
            took = watch.time_usr1(pid)
            if took is None:
                missed += 1
            else:
                usr1.append(took)
            pause = usr1_every - (took or 0)
            if pause > 0:
                time.sleep(pause)
        gathered = {}
        for _ in procs:
            kind, latencies, errors = results.get(timeout=seconds + 2 * REQUEST_TIMEOUT + 30)
            gathered[kind] = (latencies, errors)
    finally:
        for p in procs:
            p.join(REQUEST_TIMEOUT + 10)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(10)
    own, writers = (a - b for a, b in zip(parent_cpu(pid, worker), cpu_before))
    finger, finger_errors = gathered["finger"]
    sets, set_errors = gathered.get("sets", ([], 0))
    return {"phase": name, "seconds": seconds, "sets": len(sets), "set_errors": set_errors,
            "set_p50": pct(sets, 0.5) * 1000, "set_p99": pct(sets, 0.99) * 1000,
            "set_max": max(sets, default=float("nan")) * 1000,
            "queries": len(finger), "finger_errors": finger_errors,
            "p50": pct(finger, 0.5) * 1000, "p99": pct(finger, 0.99) * 1000,
            "max": max(finger, default=float("nan")) * 1000,
            "usr1": len(usr1), "usr1_missed": missed, "usr1_p50": pct(usr1, 0.5) * 1000,
            "usr1_max": max(usr1, default=float("nan")) * 1000,
            "parent_cpu": own, "writers_cpu": writers}


def table(rows, label):
    out = ["| code | phase | sets (errors) | sets/s | set p50 / p99 / max ms | finger queries "
           "(errors) | finger p50 / p99 / max ms | SIGUSR1 answered (missed) | SIGUSR1 "
           "p50 / max ms | parent's own CPU s | writing children's CPU s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        sets = (f"{r['set_p50']:.0f} / {r['set_p99']:.0f} / {r['set_max']:.0f}"
                if r["sets"] else "-")
        out.append(f"| {label} | {r['phase']} | {r['sets']} ({r['set_errors']}) | "
                   f"{r['sets'] / r['seconds']:.1f} | {sets} | {r['queries']} "
                   f"({r['finger_errors']}) | {r['p50']:.2f} / {r['p99']:.2f} / "
                   f"{r['max']:.1f} | {r['usr1']} ({r['usr1_missed']}) | "
                   f"{r['usr1_p50']:.1f} / {r['usr1_max']:.1f} | {r['parent_cpu']:.2f} | "
                   f"{r['writers_cpu']:.2f} |")
    return "\n".join(out)


def time_split(path, users, rounds=3):
    """Median ms of the steps of one set on the file at ``path``, in this process:
    ``{step: ms}``. The steps of the former write (a read, parse_users, with_status,
    one write from memory, the fsyncs and rename) are timed one by one; the write of
    this tree, when it has one (write_status with ``trusted``), whole, on the version
    it wrote itself and on a version someone else wrote."""
    import inspect

    from fingerd.users import editing, fileio, usersfile
    steps = {}

    def timed(step, call):
        started = time.perf_counter()
        result = call()
        steps.setdefault(step, []).append((time.perf_counter() - started) * 1000)
        return result

    directory = os.path.dirname(path)
    for n in range(rounds):
        name, status = f"user{(n * 7919) % users}", f"split {n}"
        data, _ = timed("before: read the whole file", lambda: fileio.read_bounded(path))
        new = timed("before: edit it (with_status: parse_users, then line by line)",
                    lambda: usersfile.with_status(data, name, status, path))
        timed("before: of which parse_users alone", lambda: usersfile.parse_users(data, path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".users.", suffix=".tmp")
        os.fchmod(fd, os.stat(path).st_mode & 0o7777)

        def write():
            view = memoryview(new)
            while view:
                view = view[os.write(fd, view):]

        def sync_and_rename():
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, path)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dir_fd)
            os.close(dir_fd)

        timed("before: write the new file from memory, in one call", write)
        timed("before and after: fsync it, rename it, fsync the directory", sync_and_rename)
    if "trusted" in inspect.signature(editing.write_status).parameters:
        for n in range(rounds):
            name = f"user{(n * 7927) % users}"
            _, sig = timed("after: a whole set on a file someone else wrote "
                           "(read, check_users, splice, copy, fsyncs)",
                           lambda: editing.write_status(path, name, f"untrusted {n}"))
            timed("after: a whole set on the version it wrote itself (search, copy in the "
                  "kernel, fsyncs)", lambda: editing.write_status(path, name, f"trusted {n}",
                                                                 trusted=sig))
    return {step: sorted(ms)[len(ms) // 2] for step, ms in steps.items()}


def split_table(split):
    return "\n".join(["| step of one set, in process | median ms |", "|---|---:|"] +
                     [f"| {step} | {ms:.0f} |" for step, ms in split.items()])


class SetsFingerd(Fingerd):
    """fingerd as bench.py starts it, the setter unrationed."""

    def __init__(self, directory):
        super().__init__("fingerd", directory, setter={"rate_limit": "0"})
        self.log_path = os.path.join(directory, "fingerd.log")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--finger-rate", type=float, default=200.0,
                        help="finger queries a second")
    parser.add_argument("--usr1-every", type=float, default=1.0,
                        help="seconds between SIGUSR1s to the parent")
    parser.add_argument("--users", type=int, default=USERS, help="entries of the users file "
                        "besides alice")
    parser.add_argument("--spread", action="store_true",
                        help="pin nothing: the daemon's processes and the clients run on "
                             "any core")
    parser.add_argument("--label", default="this tree", help="names the code in the table")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    if not (0 < args.seconds <= 3600 and 0 < args.finger_rate <= 5000
            and 0.01 <= args.usr1_every <= 60 and 1 <= args.users <= 5_000_000):
        parser.error("--seconds, --finger-rate, --usr1-every or --users out of range")
    if os.geteuid() != 0:
        parser.error("run as root: fingerd is then privilege separated, as in production, "
                     "and the root parent writes the users file")
    work = tempfile.mkdtemp(prefix="fingerd-bench-sets-")
    os.chmod(work, 0o755)
    write_users(os.path.join(work, "users"), args.users)
    size = os.path.getsize(os.path.join(work, "users"))
    split = time_split(os.path.join(work, "users"), args.users)
    server = SetsFingerd(work)
    started = time.monotonic()
    server.start()
    try:
        if args.spread:
            spread_out(server.proc.pid)
        worker = worker_pid(server.proc.pid)
        # The first set after a start validates the whole file (after this change, only
        # that one): timed apart, so that the phases show the steady state.
        first, first_took = exchange(server.setter_port, b"user1\r\nthe first set\r\n")
        rows = []
        for name, with_sets in (("idle", False), ("sets in a loop", True)):
            rows.append(run_phase(server, name, args.users, args.seconds, args.finger_rate,
                                  args.usr1_every, with_sets, args.spread))
            print(f"  {name}: {rows[-1]['sets']} sets, finger p99 {rows[-1]['p99']:.2f} ms, "
                  f"SIGUSR1 max {rows[-1]['usr1_max']:.1f} ms", file=sys.stderr)
        restarted = worker_pid(server.proc.pid) != worker
    finally:
        server.stop()
    first = first.decode("ascii", "replace").strip() if first is not None else "failed"
    placement = ("nothing pinned" if args.spread else
                 "the daemon's processes pinned to one core, the clients to another")
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; fingerd as root "
            f"(privilege separated), {args.users + 1} users ({size / 1e6:.1f} MB), "
            f"{placement}, "
            f"`[setter] rate_limit = 0` and the setting client root (not rationed either "
            f"way). Each phase {args.seconds:.0f} s: finger queries paced at "
            f"{args.finger_rate:.0f}/s, SIGUSR1 to the parent every {args.usr1_every:g} s "
            f"(the next once the last was answered). A first set, made before the phases, "
            f"took {first_took:.2f} s ({first}); the worker "
            f"{'was restarted' if restarted else 'was not restarted'}; "
            f"{time.monotonic() - started:.0f} s in all.\n\n{table(rows, args.label)}\n\n"
            f"Where the time of one set goes, on the same file (median of 3):\n\n"
            f"{split_table(split)}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
