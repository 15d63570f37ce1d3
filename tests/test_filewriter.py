"""The parent's writes of the users file, each in a child of its own, driven in process."""

import errno
import json
import logging
import os
import platform
import selectors
import signal
import socket
import time

import pytest

from fingerd.limits import REPLY_TIMEOUT
from fingerd.process.parent import writer_handle
from fingerd.process.parent.filewriter import (
    COMMIT_MARGIN,
    LINGER_SECONDS,
    PROMOTE_AFTER,
    FileWriter,
)
from fingerd.process.parent.writer_handle import WRITER_NICENESS
from fingerd.process.writer import child as writer_child
from fingerd.users import editing, fileio
from tests.support.disk_faults import failing_directory_fsync
from tests.support.markers import needs_root, needs_tool
from tests.support.procfs import scheduling
from tests.support.users_files import users_file_fixture


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


path = users_file_fixture()


@pytest.fixture
def sel():
    s = selectors.DefaultSelector()
    yield s
    s.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writer(sel, clock):
    w = FileWriter(sel, clock=clock)
    yield w
    w.close()
    settle(sel, w, until=lambda: not w.busy, timeout_ok=True)
    if w.busy:
        w.kill()
        settle(sel, w)


def settle(sel, writer, until=None, seconds=20.0, timeout_ok=False):
    """Run the writer's callbacks (and reap, as SIGCHLD would) until ``until()``, or,
    without it, until no write is in progress; bounded in time."""
    done = until or (lambda: not writer.writing and not writer.waiting)
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data(key.fileobj)
        writer.reap()
    assert done() or timeout_ok, "the writer did not finish in time"


def idle(sel, writer):
    """Let the lingering child go, as the parent's loop does at the writer's deadline,
    and wait until it is reaped."""
    writer.on_deadline()
    settle(sel, writer, until=lambda: not writer.busy)


def request(n, name="alice", status="Gone fishing"):
    return {"op": "set", "id": n, "name": name, "status": status}


@pytest.fixture
def replies():
    got = []

    def on_done(reply):
        got.append(json.loads(reply))
    on_done.got = got
    return on_done


@pytest.fixture
def slow_writes(monkeypatch):
    """Each write waits this many seconds before it starts (in the child, which
    inherits the patch)."""
    delay = [0.0]
    real = fileio.replace_durably

    def slow(path, data, before_rename=None):
        time.sleep(delay[0])
        return real(path, data, before_rename)

    monkeypatch.setattr(fileio, "replace_durably", slow)
    return delay


def children(pid=None):
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_set_is_written_by_a_child_and_answered_with_the_signatures(sel, writer, path,
                                                                      replies):
    before = fileio.signature(os.stat(path))
    writer.submit(path, request(1), replies)
    assert writer.busy
    settle(sel, writer)
    assert replies.got == [{"id": 1, "ok": True, "old": list(before),
                            "new": list(fileio.signature(os.stat(path)))}]
    assert open(path, "rb").read() == b"# staff\nalice:Gone fishing\nbob:Sleeping\n"


def test_a_write_whose_outcome_is_unknown_is_answered_so(sel, writer, path, replies,
                                                         monkeypatch):
    monkeypatch.setattr(os, "fsync", failing_directory_fsync(os.fsync))  # the child's too
    writer.submit(path, request(1), replies)
    settle(sel, writer)
    assert replies.got == [{"id": 1, "ok": False, "unknown": True,
                            "error": "users file replaced, but not known to survive a "
                                     "crash: Input/output error"}]
    assert open(path, "rb").read() == b"# staff\nalice:Gone fishing\nbob:Sleeping\n"


def test_writes_are_made_one_at_a_time_in_order(sel, writer, path, replies, slow_writes):
    slow_writes[0] = 0.2
    for n in range(1, 4):
        writer.submit(path, request(n, status=f"status {n}"), replies)
    seen = set()
    settle(sel, writer, until=lambda: seen.update(children()) or len(replies.got) == 3)
    assert [r["id"] for r in replies.got] == [1, 2, 3]
    assert all(r["ok"] for r in replies.got)
    assert replies.got[1]["old"] == replies.got[0]["new"]
    assert replies.got[2]["old"] == replies.got[1]["new"]
    assert len(seen) == 1, "one child serves a run of sets"
    assert b"alice:status 3\n" in open(path, "rb").read()


def test_writes_never_overlap(sel, writer, path, replies, monkeypatch, tmp_path):
    spans = tmp_path / "spans"
    real = fileio.replace_durably

    def recorded(target, data, before_rename=None):
        started = time.monotonic()
        time.sleep(0.1)
        result = real(target, data, before_rename)
        with open(spans, "a") as f:
            f.write(f"{started} {time.monotonic()}\n")
        return result

    monkeypatch.setattr(fileio, "replace_durably", recorded)
    for n in range(1, 5):
        writer.submit(path, request(n, status=f"status {n}"), replies)
    settle(sel, writer)
    intervals = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    assert len(intervals) == 4 and len(replies.got) == 4
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:]))


def test_requests_waiting_are_counted_and_the_one_in_progress_is_not(writer, path, replies,
                                                                     slow_writes):
    slow_writes[0] = 0.5
    for n in range(1, 4):
        writer.submit(path, request(n), replies)
    assert writer.waiting == 2


def test_a_request_that_waited_longer_than_the_worker_waits_is_not_written(
        sel, writer, path, replies, clock, slow_writes):
    slow_writes[0] = 0.2
    writer.submit(path, request(1, status="first"), replies)
    writer.submit(path, request(2, status="too late"), replies)
    clock.now += REPLY_TIMEOUT
    assert writer.waiting == 0
    settle(sel, writer)
    assert replies.got[0]["ok"] and replies.got[1] == {
        "id": 2, "ok": False, "error": "the users file was not written in time"}
    assert b"alice:first\n" in open(path, "rb").read()


def test_requests_no_worker_waits_for_are_answered_at_once_never_kept(
        sel, writer, path, replies, clock, slow_writes):
    """A worker sending sets already late (or about to be) while a long write runs grew
    the root parent's queue without bound: uncounted by ``waiting``, they stayed there
    until the write ended, and were answered all at once."""
    slow_writes[0] = 0.5
    writer.submit(path, request(1, status="first"), replies)
    for n in range(2, 1002):
        writer.submit(path, request(n), replies, within=-1.0)
    assert [reply["id"] for reply in replies.got] == list(range(2, 1002))
    assert not any(reply["ok"] for reply in replies.got)
    writer.submit(path, request(2000, status="soon late"), replies, within=0.5)
    clock.now += 1.0
    writer.submit(path, request(2001, status="in time"), replies)
    assert replies.got[-1]["id"] == 2000 and writer.waiting == 1
    settle(sel, writer)
    assert [reply["id"] for reply in replies.got[-2:]] == [1, 2001]
    assert b"alice:in time\n" in open(path, "rb").read()


def test_a_write_not_renamed_in_time_is_called_off_and_the_file_left_as_it_was(
        sel, clock, path, replies, monkeypatch):
    """The worker stops waiting REPLY_TIMEOUT after it asked, and its client is told the
    set failed: a write whose new file is ready only after COMMIT_MARGIN before then is
    never renamed into place."""
    real = fileio.replace_durably
    before = open(path, "rb").read()

    def slow_copy(target, data, before_rename=None):
        def copy_slowly(fd):
            time.sleep(0.6)  # the copy of a large file on a busy machine
            data(fd)
        return real(target, copy_slowly, before_rename)

    monkeypatch.setattr(fileio, "replace_durably", slow_copy)
    writer = FileWriter(sel, clock=clock, expire_after=COMMIT_MARGIN + 0.3)
    try:
        writer.submit(path, request(1), replies)
        settle(sel, writer)
    finally:
        writer.close()
        settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got == [{"id": 1, "ok": False,
                            "error": "the users file was not written in time"}]
    assert open(path, "rb").read() == before
    assert [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")] == []


def test_a_file_validated_by_a_write_called_off_for_time_is_not_validated_again(
        sel, clock, path, replies, monkeypatch, tmp_path):
    """A valid users file too large to validate within a set's time (250 MB took 15 s,
    the worker waits 10): the set that validated it is called off, the next one only
    edits it, in time. Before, every set validated it again, and every one failed."""
    validations = tmp_path / "validations"
    real = editing.check_users

    def slow_check(data, where):
        with open(validations, "a") as f:
            f.write("validated\n")
        time.sleep(COMMIT_MARGIN + 0.6)  # the worker's time for the set runs out
        return real(data, where)

    monkeypatch.setattr(editing, "check_users", slow_check)  # the child inherits it
    writer = FileWriter(sel, clock=clock, expire_after=COMMIT_MARGIN + 0.5)
    try:
        writer.submit(path, request(1, status="first"), replies)
        settle(sel, writer)
        writer.submit(path, request(2, status="second"), replies)
        settle(sel, writer)
    finally:
        writer.close()
        settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got[0] == {"id": 1, "ok": False,
                              "error": "the users file was not written in time"}
    assert replies.got[1]["ok"], replies.got[1]
    assert open(path, "rb").read() == b"# staff\nalice:second\nbob:Sleeping\n"
    assert validations.read_text() == "validated\n", "validated once, by the first set"


def test_an_operators_broken_edit_after_a_write_refuses_the_next_set(sel, writer, path,
                                                                      replies):
    writer.submit(path, request(1, status="one"), replies)
    settle(sel, writer)
    with open(path, "ab") as f:
        f.write(b"broken line\n")
    before = open(path, "rb").read()
    writer.submit(path, request(2, status="two"), replies)
    settle(sel, writer)
    assert replies.got[1] == {"id": 2, "ok": False,
                              "error": "users file on disk has errors; fix it first"}
    assert open(path, "rb").read() == before


def test_the_child_finishes_its_write_whatever_signal_the_parent_is_sent(
        sel, writer, path, replies, slow_writes):
    slow_writes[0] = 0.5
    writer.submit(path, request(1), replies)
    [child] = children()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        os.kill(child, signum)
    settle(sel, writer)
    assert replies.got[0]["ok"]
    assert b"alice:Gone fishing\n" in open(path, "rb").read()


def test_a_killed_child_leaves_the_file_whole_and_is_answered_with_an_error(
        sel, writer, path, replies, slow_writes, caplog):
    slow_writes[0] = 30.0
    before = open(path, "rb").read()
    writer.submit(path, request(1), replies)
    writer.submit(path, request(2, status="after"), replies)
    [child] = children()
    slow_writes[0] = 0.0  # for the next child only
    with caplog.at_level(logging.WARNING):
        writer.kill()
        # The socket's end can be read before the child is a zombie to reap: its death is
        # logged when it is reaped, maybe a turn after the writes are settled.
        settle(sel, writer, until=lambda: not writer.writing and not writer.waiting
               and f"writer {child} killed" in caplog.text)
    assert replies.got[0] == {"id": 1, "ok": False,
                              "error": "cannot write users file: the write was cut short"}
    assert f"users file writer {child} killed by SIGKILL" in caplog.text
    assert replies.got[1]["ok"], "the next request is carried out, the file validated again"
    assert open(path, "rb").read() == before.replace(b"alice:Happy", b"alice:after")
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


@pytest.fixture
def next_child_serves(monkeypatch):
    """``next_child_serves(life)``: the next child forked lives ``life(sock)`` instead of
    serving writes (an exit status); the children after it serve as they should."""
    real_serve, real_fork = writer_child.serve, writer_handle.WriterHandle.fork.__func__
    lives, forking = [], [None]

    def fork(cls, status_writer):
        forking[0] = lives.pop(0) if lives else None
        try:
            return real_fork(cls, status_writer)
        finally:
            forking[0] = None

    def serve(sock, status_writer):
        life = forking[0]
        return life(sock) if life is not None else real_serve(sock, status_writer)

    monkeypatch.setattr(writer_handle.WriterHandle, "fork", classmethod(fork))
    monkeypatch.setattr(writer_child, "serve", serve)
    return lives.append


#: What a child sends just before it renames its new file into place.
NOTE = json.dumps(writer_child.COMMITTING).encode()
GARBLED = b'{"ok": true, "old"'


def sending(*datagrams, then_ends=False):
    """A child's life for ``next_child_serves``: it reads the request, sends
    ``datagrams``, then ends, or waits until it is killed."""
    def life(sock):
        sock.recv(writer_child.MAX_REQUEST_BYTES)
        for datagram in datagrams:
            sock.send(datagram)
        if not then_ends:
            sock.recv(1)
        return 0
    return life


def test_a_child_that_ends_with_its_request_unread_is_answered_with_an_error(
        sel, writer, path, replies, next_child_serves, caplog):
    def ends_first(sock):
        sock.recv(1, socket.MSG_PEEK)  # the request is there, and left unread
        return 3
    next_child_serves(ends_first)
    with caplog.at_level(logging.WARNING):
        writer.submit(path, request(1), replies)
        settle(sel, writer, until=lambda: not writer.busy)
        writer.submit(path, request(2, status="after"), replies)
        settle(sel, writer)
    assert replies.got[0] == {"id": 1, "ok": False,
                              "error": "cannot write users file: the write was cut short"}
    assert "ended before it said how its write went" in caplog.text
    assert "exited with status 3" in caplog.text
    assert replies.got[1]["ok"], "the next child writes"
    assert b"alice:after" in open(path, "rb").read()


def test_a_child_killed_right_after_its_rename_is_answered_unknown(sel, writer, path,
                                                                   replies, monkeypatch,
                                                                   caplog):
    """The rename is the moment the file changes: the file holds the new status, so
    ERROR would say what is not so. The parent answers from the note the child sent
    before it renamed, not from a look at the disk."""
    parent, real = os.getpid(), fileio._put_in_place

    def rename_then_die(*args, **kwargs):
        real(*args, **kwargs)
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(fileio, "_put_in_place", rename_then_die)  # the child inherits it
    with caplog.at_level(logging.WARNING):
        writer.submit(path, request(1), replies)
        settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got == [{"id": 1, "ok": False, "unknown": True, "error":
                            "the write was cut short as its new file was renamed into place"}]
    assert "ended before it said how its write went" in caplog.text
    assert "killed by SIGKILL" in caplog.text
    assert open(path, "rb").read() == b"# staff\nalice:Gone fishing\nbob:Sleeping\n"


@pytest.mark.parametrize("life", [sending(NOTE, then_ends=True), sending(NOTE, GARBLED)],
                         ids=["ends", "garbles"])
def test_a_child_that_said_it_renames_and_never_reports_is_answered_unknown(
        sel, writer, path, replies, next_child_serves, life):
    next_child_serves(life)
    writer.submit(path, request(1), replies)
    settle(sel, writer, until=lambda: not writer.busy)
    writer.submit(path, request(2, status="after"), replies)
    settle(sel, writer)
    assert replies.got[0] == {"id": 1, "ok": False, "unknown": True, "error":
                              "the write was cut short as its new file was renamed into place"}
    assert replies.got[1]["ok"], "the next child writes"
    assert b"alice:after" in open(path, "rb").read()


def test_a_note_for_no_write_in_progress_kills_the_child(sel, writer, path, replies,
                                                         next_child_serves, caplog):
    next_child_serves(sending(
        json.dumps({"ok": False, "error": "refused", "trusted": None}).encode(), NOTE))
    with caplog.at_level(logging.WARNING):
        writer.submit(path, request(1), replies)
        settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got == [{"id": 1, "ok": False, "error": "refused"}]
    assert "sent an unreadable report; killing it" in caplog.text


def test_a_note_holds_for_its_own_write_only(sel, writer, path, replies, next_child_serves):
    failed = "cannot write users file: Read-only file system"

    def renames_once(sock):
        sock.recv(writer_child.MAX_REQUEST_BYTES)
        sock.send(NOTE)
        sock.send(json.dumps({"ok": False, "error": failed, "trusted": None}).encode())
        sock.recv(1, socket.MSG_PEEK)  # the next request is there, and left unread
        return 3
    next_child_serves(renames_once)
    writer.submit(path, request(1), replies)
    settle(sel, writer)
    writer.submit(path, request(2), replies)
    settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got == [{"id": 1, "ok": False, "error": failed},
                           {"id": 2, "ok": False,
                            "error": "cannot write users file: the write was cut short"}]


def test_a_report_that_is_not_one_kills_the_child_and_is_answered_with_an_error(
        sel, writer, path, replies, next_child_serves, caplog):
    before = open(path, "rb").read()
    next_child_serves(sending(GARBLED))
    with caplog.at_level(logging.WARNING):
        writer.submit(path, request(1), replies)
        settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got == [{"id": 1, "ok": False,
                            "error": "cannot write users file: the write was cut short"}]
    assert "sent an unreadable report; killing it" in caplog.text
    assert "killed by SIGKILL" in caplog.text
    assert open(path, "rb").read() == before


def test_a_long_report_is_read_whole(sel, writer, path, replies, next_child_serves):
    error = "cannot write users file: " + "/a-long-directory-name" * 300

    def fails_at_length(sock):
        sock.recv(writer_child.MAX_REQUEST_BYTES)
        sock.send(json.dumps({"ok": False, "error": error, "trusted": None}).encode())
        return 0 if not sock.recv(1) else 1  # until let go
    next_child_serves(fails_at_length)
    writer.submit(path, request(1), replies)
    settle(sel, writer)
    assert len(error) > 4096 and replies.got == [{"id": 1, "ok": False, "error": error}]


def test_discarded_requests_are_neither_written_nor_answered(sel, writer, path, replies,
                                                             slow_writes):
    slow_writes[0] = 0.2
    writer.submit(path, request(1, status="first"), replies)
    writer.submit(path, request(2, status="dropped"), replies)
    writer.discard_queued()
    settle(sel, writer)
    assert [r["id"] for r in replies.got] == [1]
    assert b"dropped" not in open(path, "rb").read()


def test_a_child_reaped_by_someone_else_is_not_waited_for_again(sel, writer, path, replies):
    writer.submit(path, request(1), replies)
    settle(sel, writer)
    [child] = children()
    writer.on_deadline()
    _, status = os.waitpid(child, 0)
    assert writer.reaped(child, status)
    assert not writer.reaped(child + 100000, 0)
    settle(sel, writer, until=lambda: not writer.busy)
    assert replies.got[0]["ok"]


def test_the_child_lingers_for_the_next_set_then_is_let_go(sel, writer, path, replies, clock):
    writer.submit(path, request(1, status="one"), replies)
    settle(sel, writer)
    assert writer.deadline == clock.now + LINGER_SECONDS
    [child] = children()
    linger_end = writer.deadline
    clock.now += LINGER_SECONDS / 4
    writer.submit(path, request(2, status="two"), replies)
    assert writer.deadline != linger_end, "a child writing is not let go"
    settle(sel, writer)
    assert children() == [child] and [r["ok"] for r in replies.got] == [True, True]
    idle(sel, writer)
    assert children() == [] and writer.deadline is None
    writer.submit(path, request(3, status="three"), replies)
    settle(sel, writer)
    assert replies.got[2]["ok"] and children() != [child]
    assert b"alice:three\n" in open(path, "rb").read()


def test_a_stop_right_after_the_idle_child_was_let_go_waits_for_it_to_end(sel, writer, path,
                                                                         replies):
    """Its linger over, the child is let go; the parent stops before the child's end is
    read: closing finds a child that no longer accepts writes, and waits for it."""
    writer.submit(path, request(1), replies)
    settle(sel, writer)
    writer.on_deadline()
    writer.close()
    settle(sel, writer, until=lambda: not writer.busy)
    assert children() == [] and replies.got[0]["ok"]


def test_close_lets_the_write_in_progress_finish_then_ends_the_child(sel, writer, path,
                                                                     replies, slow_writes):
    slow_writes[0] = 0.3
    writer.submit(path, request(1), replies)
    writer.submit(path, request(2, status="never"), replies)
    writer.close()
    settle(sel, writer, until=lambda: not writer.busy)
    assert [r["id"] for r in replies.got] == [1] and replies.got[0]["ok"]
    assert children() == []
    assert b"never" not in open(path, "rb").read()


def writer_niceness():
    return min(19, os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICENESS)


@needs_root
@needs_tool("ionice", "util-linux")
def test_the_child_writes_at_sched_idle_its_io_best_effort_at_the_lowest_level(
        sel, writer, path, replies):
    writer.submit(path, request(1), replies)
    [child] = children()
    assert scheduling(child) == (os.SCHED_IDLE, writer_niceness(), "best-effort: prio 7")
    settle(sel, writer)
    assert replies.got[0]["ok"] and children() == [child]
    assert os.sched_getscheduler(child) == os.SCHED_IDLE


@needs_root
def test_a_late_write_is_finished_at_the_writers_niceness_and_the_next_starts_idle(
        sel, writer, path, replies, clock, slow_writes):
    slow_writes[0] = 0.5
    writer.submit(path, request(1, status="late"), replies)
    [child] = children()
    assert writer.deadline == clock.now + PROMOTE_AFTER
    clock.now = writer.deadline
    writer.on_deadline()
    assert os.sched_getscheduler(child) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, child) == writer_niceness()
    assert writer.deadline is None and writer.writing
    settle(sel, writer)
    assert replies.got[0]["ok"] and children() == [child]
    assert os.sched_getscheduler(child) == os.SCHED_IDLE
    slow_writes[0] = 0.0
    writer.submit(path, request(2, status="on time"), replies)
    assert writer.deadline == clock.now + PROMOTE_AFTER
    settle(sel, writer)
    assert [r["ok"] for r in replies.got] == [True, True] and children() == [child]
    assert b"alice:on time\n" in open(path, "rb").read()


def test_where_it_cannot_run_idle_the_child_writes_at_its_niceness_said_once(
        sel, writer, path, replies, clock, monkeypatch, caplog):
    monkeypatch.setattr(writer_handle, "IOPRIO_SET", {})
    with caplog.at_level(logging.WARNING):
        for n in (1, 2):
            writer.submit(path, request(n, status=f"status {n}"), replies)
            [child] = children()
            assert writer.deadline is None, "nothing to promote"
            assert os.sched_getscheduler(child) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, child) == writer_niceness()
            settle(sel, writer)
            idle(sel, writer)
    assert [r["ok"] for r in replies.got] == [True, True]
    assert [r.getMessage() for r in caplog.records] == [
        f"users file writer not at SCHED_IDLE: no ioprio_set number for "
        f"{platform.machine()}; it runs at niceness {writer_niceness()}"]


def test_where_its_priority_cannot_be_set_the_child_writes_at_the_parents_said_once(
        sel, writer, path, replies, monkeypatch, caplog):
    """As under a seccomp filter that refuses setpriority (systemd's ~@resources)."""
    def refused(*args):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "setpriority", refused)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with caplog.at_level(logging.WARNING):
        for n in (1, 2):
            writer.submit(path, request(n, status=f"status {n}"), replies)
            [child] = children()
            assert os.sched_getscheduler(child) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, child) == own
            settle(sel, writer)
            idle(sel, writer)
    assert [r["ok"] for r in replies.got] == [True, True]
    assert b"alice:status 2\n" in open(path, "rb").read()
    assert [r.getMessage() for r in caplog.records] == [
        f"users file writer not at SCHED_IDLE: setpriority: {os.strerror(errno.EPERM)}; it "
        f"runs at niceness {own}, as the parent"]
