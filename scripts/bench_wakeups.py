#!/usr/bin/env python3
"""How long a process that wakes on the core where the users file is being written waits
to run, by the scheduling of the writer (fingerd/process/parent/writer_handle.py's choice).

A probe pinned to the first core sleeps on a pipe; this process, pinned to
the second, writes the time into the pipe every --interval ms, and the probe
records how late it ran, as the worker's threads wake for each query.
Meanwhile a writer pinned to the first core sets statuses in a loop on a
users file of --users entries with StatusWriter, the code the writing child
runs (the first set, which validates the whole file, made before the
clock starts), at one of:

- none: no writer, the floor that the machine's other work leaves;
- nice: SCHED_OTHER at niceness +10 (the writing child before SCHED_IDLE);
- batch: SCHED_BATCH at niceness 19;
- idle: as ``writer_handle.run_behind`` puts the writing child (SCHED_IDLE, its
  I/O best-effort at the lowest level).

With --hog, a process spinning at niceness 0 on the first core stands for a
busy machine: the sets a second then show what each policy leaves the
writer. The policies are run in turn, --rounds times. As root (the idle
policy must be promotable, as in the daemon).

    python3 scripts/bench_wakeups.py [--seconds 15] [--rounds 3] [--interval 5]
                                     [--users 1000000] [--hog] [--out FILE.md]

Prints a Markdown table; also writes it to --out when given. Every loop
bounded in count and time; every process started is ended by its pid.
"""

import argparse
import os
import select
import shutil
import signal
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench import CLIENT_CPU, SERVER_CPU, machine  # noqa: E402
from bench_scale import write_users  # noqa: E402
from bench_sets import pct  # noqa: E402

from fingerd.process.parent import writer_handle  # noqa: E402
from fingerd.users.editing import StatusWriter  # noqa: E402

POLICIES = ("none", "nice", "batch", "idle")
STAMP = struct.Struct("d")
#: The writer's report: sets made, in how many seconds.
SETS = struct.Struct("qd")
#: The stamp that tells the probe to stop.
END = -1.0


def fork(body):
    """Run ``body()`` in a child that exits when it returns; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def end(pids):
    """Kill and reap the children ``pids`` that are still there."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def read_exactly(fd, count, deadline):
    """``count`` bytes from ``fd`` before ``deadline`` (monotonic), or fewer if it ends."""
    data = b""
    while len(data) < count and time.monotonic() < deadline:
        if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(fd, count - len(data))
            if not chunk:
                break
            data += chunk
    return data


def probe(stamps, out, stop_at):
    """Record how late each stamp was read; write the delays out at the END stamp."""
    os.sched_setaffinity(0, {SERVER_CPU})
    delays = []
    while time.monotonic() < stop_at:
        data = read_exactly(stamps, STAMP.size, stop_at)
        if len(data) < STAMP.size:
            break
        (sent,) = STAMP.unpack(data)
        if sent == END:
            break
        delays.append(time.monotonic() - sent)
    payload = struct.pack(f"{len(delays)}d", *delays)
    payload = struct.pack("q", len(delays)) + payload
    while payload:
        payload = payload[os.write(out, payload):]


def writer(path, users, ready, go, out, stop_at):
    """Validate once, say so, wait for the word, then set statuses until ``stop_at`` or
    the next word; write how many sets it made in how many seconds."""
    os.sched_setaffinity(0, {SERVER_CPU})
    write = StatusWriter()
    write(path, "user1", "validated")
    os.write(ready, b"r")
    if read_exactly(go, 1, stop_at) != b"g":
        return
    sets, started = 0, time.monotonic()
    while time.monotonic() < stop_at and not select.select([go], [], [], 0)[0]:
        write(path, f"user{(sets * 7919) % users}", f"set {sets}")
        sets += 1
    os.write(out, SETS.pack(sets, time.monotonic() - started))


def hog(stop_at):
    os.sched_setaffinity(0, {SERVER_CPU})
    while time.monotonic() < stop_at:
        pass


def place(pid, policy):
    """Give the writer ``pid`` its scheduling."""
    if policy == "nice":
        os.setpriority(os.PRIO_PROCESS, pid, 10)
    elif policy == "batch":
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    elif policy == "idle":
        why = writer_handle.run_behind(pid, 10)
        if why is not None:
            raise RuntimeError(f"the writer cannot run at SCHED_IDLE here: {why}")


def run_round(path, users, policy, seconds, interval, with_hog):
    """One policy for ``seconds``: ``{"delays": [...], "sets_per_second": n or None}``."""
    stop_at = time.monotonic() + seconds + 120
    pids = []
    stamps_r, stamps_w = os.pipe()
    delays_r, delays_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    sets_r, sets_w = os.pipe()
    try:
        if with_hog:
            pids.append(fork(lambda: hog(stop_at)))
        if policy != "none":
            pids.append(fork(lambda: writer(path, users, ready_w, go_r, sets_w, stop_at)))
            if read_exactly(ready_r, 1, stop_at) != b"r":
                raise RuntimeError("the writer did not get ready")
            place(pids[-1], policy)
            os.write(go_w, b"g")
        pids.append(fork(lambda: probe(stamps_r, delays_w, stop_at)))
        os.sched_setaffinity(0, {CLIENT_CPU})
        started = time.monotonic()
        tick = started
        while tick < started + seconds:
            os.write(stamps_w, STAMP.pack(time.monotonic()))
            tick += interval
            pause = tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        os.write(stamps_w, STAMP.pack(END))
        (count,) = struct.unpack("q", read_exactly(delays_r, 8, stop_at))
        delays = struct.unpack(f"{count}d", read_exactly(delays_r, 8 * count, stop_at))
        rate = None
        if policy != "none":
            os.write(go_w, b"s")
            sets, spent = SETS.unpack(read_exactly(sets_r, SETS.size, stop_at))
            rate = sets / spent
        return {"delays": delays, "sets_per_second": rate}
    finally:
        end(pids)
        for fd in (stamps_r, stamps_w, delays_r, delays_w, ready_r, ready_w, go_r, go_w,
                   sets_r, sets_w):
            os.close(fd)


def table(rows):
    out = ["| round | writer | load before | wake-ups | late by p50 / p99 / max ms | "
           "sets/s |", "|---:|---|---|---:|---:|---:|"]
    for r in rows:
        delays = [d * 1000 for d in r["delays"]]
        rate = r["sets_per_second"]
        sets = "-" if rate is None else f"{rate:.1f}"
        out.append(f"| {r['round']} | {r['policy']} | {r['load']} | {len(delays)} | "
                   f"{pct(delays, 0.5):.2f} / {pct(delays, 0.99):.2f} / "
                   f"{max(delays, default=float('nan')):.2f} | {sets} |")
    return "\n".join(out)


def heading(args, size):
    return (f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; a users file of "
            f"{args.users + 1} entries ({size / 1e6:.1f} MB); the probe and the writer on "
            f"one core, {'with a process spinning on it too, ' if args.hog else ''}"
            f"the clock on another; a wake-up every {args.interval:g} ms for "
            f"{args.seconds:g} s a round; load is the 1-minute load average before "
            f"the round.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every policy")
    parser.add_argument("--interval", type=float, default=5.0, help="ms between wake-ups")
    parser.add_argument("--users", type=int, default=1_000_000, help="entries of the file")
    parser.add_argument("--hog", action="store_true",
                        help="a process spinning on the writer's core as well")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    if not (0 < args.seconds <= 600 and 1 <= args.rounds <= 20 and 1 <= args.interval <= 1000
            and 1 <= args.users <= 5_000_000):
        parser.error("--seconds, --rounds, --interval or --users out of range")
    if os.geteuid() != 0:
        parser.error("run as root: the writing child's SCHED_IDLE needs the right to "
                     "promote it, as the daemon's root parent has")
    if (os.cpu_count() or 1) < 2:
        parser.error("needs two cores: the probe and writer on one, the clock on the other")
    work = tempfile.mkdtemp(prefix="fingerd-bench-wakeups-")
    try:
        path = os.path.join(work, "users")
        write_users(path, args.users)
        rows = []
        for n in range(1, args.rounds + 1):
            for policy in POLICIES:
                load = open("/proc/loadavg").read().split()[0]
                row = run_round(path, args.users, policy, args.seconds,
                                args.interval / 1000, args.hog)
                row.update(round=n, policy=policy, load=load)
                rows.append(row)
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        size = os.path.getsize(path)
    finally:
        shutil.rmtree(work)
    text = f"{heading(args, size)}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
