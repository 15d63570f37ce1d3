"""Nothing a worker started outlives it (docs/guide.md, "Processes and signals").

The parent is a child subreaper: a process a worker leaves behind becomes
the parent's child whatever session it moved to, and is killed once the
worker is reaped, and before the next one starts. The real ForkedWorkers
runs here in a sandbox process (it takes every child of its process for a
worker's leftover), with a stand-in worker that does what a hostile one
would, had its filter been refused: fork, setsid, fork again.
"""

import logging
import os
import signal
import time

from fingerd.process.parent import descendants
from fingerd.process.parent.forking import ForkedWorkers
from fingerd.process.worker import main as worker
from tests.support.children import in_child


def ppid(pid):
    proc = descendants.stat(pid)
    return None if proc is None else proc.ppid


def read_pids(fd, count):
    """``{name: pid}`` of the ``count`` processes that said who they are."""
    data = b""
    while data.count(b"\n") < count:
        chunk = os.read(fd, 100)
        assert chunk, "the stand-in worker ended early"
        data += chunk
    return {name: int(pid) for name, pid in (line.split() for line in data.decode().splitlines())}


def sleep_forever(report_fd, name):
    os.write(report_fd, f"{name} {os.getpid()}\n".encode())
    while True:
        time.sleep(60)


def stand_in_worker(report_fd):
    """A worker body that leaves two processes: one in a session of its own whose
    parent is gone, and one still its child; then waits to be killed."""
    def run(config, account, sockets, monitor_sock, log_fd, restarts, snapshot_fd, counts_fd,
            reload, new_store):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                sleep_forever(report_fd, "orphan")
            os._exit(0)
        if os.fork() == 0:
            sleep_forever(report_fd, "attached")
        while True:
            time.sleep(60)
    return run


def sandbox():
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("fingerd").addHandler(handler)
    report_r, report_w = os.pipe()
    worker.run = stand_in_worker(report_w)
    stray = os.fork()  # left by an earlier worker, say
    if stray == 0:
        while True:
            time.sleep(60)
    workers = ForkedWorkers(None, None, {})
    try:
        return watch(workers, stray, report_r, lines)
    finally:
        descendants.kill_leftovers()  # whatever went wrong, this test leaves nothing


def watch(workers, stray, report_r, lines):
    pid, monitor, log_fd = workers.spawn(0)
    stray_gone = descendants.stat(stray) is None
    pids = read_pids(report_r, 2)
    orphan, attached = pids["orphan"], pids["attached"]
    deadline = time.monotonic() + 10
    while ppid(orphan) != os.getpid() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = {"orphan's parent": ppid(orphan), "orphan's session": os.getsid(orphan),
            "sandbox's session": os.getsid(0), "worker's session": os.getsid(pid),
            "attached's parent": ppid(attached)}
    os.kill(pid, signal.SIGKILL)
    reaped = []
    while pid not in reaped and time.monotonic() < deadline:
        reaped += [p for p, _ in workers.reap()]
        time.sleep(0.01)
    return {"sandbox": os.getpid(), "worker": pid, "stray": stray, "stray gone": stray_gone,
            "orphan": orphan, "attached": attached, **seen, "worker reaped": pid in reaped,
            "left": [p for p in (orphan, attached) if descendants.stat(p) is not None],
            "log": lines}


def test_what_a_dead_worker_leaves_behind_is_killed_whatever_its_session():
    result = in_child(sandbox)
    assert result.error is None
    r = result.value
    assert r["stray gone"]
    assert r["orphan's parent"] == r["sandbox"]   # the subreaper's, not init's
    assert r["orphan's session"] not in (r["sandbox's session"], r["worker's session"])
    assert r["attached's parent"] == r["worker"]
    assert r["worker reaped"]
    assert r["left"] == []
    assert f"killed 1 process left behind by an earlier worker: {r['stray']}" in r["log"]
    killed = " ".join(map(str, sorted((r["orphan"], r["attached"]))))
    assert f"killed 2 processes left behind by worker {r['worker']}: {killed}" in r["log"]


def test_a_pid_seen_before_is_not_killed_once_another_process_has_it():
    def body():
        pid = os.fork()
        if pid == 0:
            while True:
                time.sleep(60)
        seen = descendants.stat(pid)
        descendants._kill(seen._replace(start=seen.start + 1), own=False)
        alive = descendants.stat(pid).state != "Z"
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return alive
    assert in_child(body).value is True


def test_a_zombie_child_is_seen_and_reaped():
    def body():
        before = descendants.has_children()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        deadline = time.monotonic() + 10
        while descendants.stat(pid).state != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = descendants.has_children()
        left = descendants.kill_leftovers()
        return [before, seen, left, descendants.has_children(), descendants.stat(pid)]
    assert in_child(body).value == [False, True, [[], []], False, None]


def test_a_child_the_parent_keeps_is_spared_and_the_others_are_killed():
    """The supervisor's file writer is the parent's own child, not a worker's leftover."""
    def body():
        kept = os.fork()
        if kept == 0:
            while True:
                time.sleep(60)
        stray = os.fork()
        if stray == 0:
            while True:
                time.sleep(60)
        killed, remaining = descendants.kill_leftovers(spare={kept})
        alive = descendants.stat(kept) is not None and descendants.stat(kept).state != "Z"
        os.kill(kept, signal.SIGKILL)
        os.waitpid(kept, 0)
        return [killed == [stray], remaining, alive, descendants.stat(stray)]
    assert in_child(body).value == [True, [], True, None]
