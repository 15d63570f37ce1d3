"""Sets the root parent carries out for the worker: one the worker gave up on changes
nothing, a users file the parent itself wrote is not validated again at each set, and
one whose writer dies is answered as far as the parent knows what it did."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.support import ROOT
from tests.support.daemon import run_first
from tests.support.disk_faults import stalled_in_a_daemon
from tests.support.markers import needs_root
from tests.support.polling import wait_until
from tests.support.procfs import children, proc_status


def set_until_ok(daemon, data, timeout=30.0):
    """Send the set ``data`` until a worker answers OK (one may be restarting)."""
    answers = []

    def answered_ok():
        try:
            answers.append(daemon.setter(data, timeout=15))
        except OSError as exc:
            answers.append(repr(exc))
        return answers[-1] == b"OK\r\n"

    wait_until(answered_ok, timeout=timeout, interval=0.2, what=f"OK to {data!r}: {answers}")


#: Run first by a daemon: its worker waits 3 s for the parent's answer to a set, not
#: REPLY_TIMEOUT's 10 s, so that a test need stop the parent only that long.
SHORT_REPLY_WAIT = "import fingerd.limits\nfingerd.limits.REPLY_TIMEOUT = 3.0\n"


def test_a_set_the_parent_reads_after_the_worker_gave_up_changes_nothing(make_daemon,
                                                                         tmp_path):
    """The parent stopped longer than the worker waits for its answer: the worker cannot
    tell whether the set was written, so the client is told nothing (ERROR would say
    that nothing changed), and the parent, once it runs again, does not carry it out."""
    d = make_daemon(fingerd__request_timeout="30").start(
        env=run_first(str(tmp_path / "site"), SHORT_REPLY_WAIT))
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        told = subprocess.run([sys.executable, "-m", "fingerd.ctl", "-c", d.config_file, "set",
                               "alice", "set by fingerd-ctl"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert (told.returncode, told.stderr) == (1, (
        "fingerd-ctl: no answer from the setter: whether the status of alice was set is "
        "unknown; see with: fingerd-ctl get alice\n"))
    wait_until(lambda: "the parent process did not answer: timed out; whether the status of "
               "alice was written is unknown, and the client is told nothing" in d.log(),
               what="the unknown outcome logged")
    # Requests are carried out in the order they come: once a later one is written,
    # the late one has been read, and dropped.
    set_until_ok(d, b"bob\r\nawake\r\n")
    assert d.finger(b"bob\r\n") == b"awake\r\n"
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    with open(d.users_file, "rb") as f:
        assert f.read() == b"alice:Happy and well\nbob:awake\n"


def test_local_answers_never_wait_behind_sets_the_parent_is_slow_to_carry_out(make_daemon):
    """Sets wait on the parent one at a time, each for up to 10 s: they hold at most a
    quarter of the pool's threads, so that answers made on the pool (an account's, with
    the system's accounts) go on while the parent is stopped."""
    d = make_daemon(fingerd__threads="8", finger__system_users="yes").start()
    replies = []

    def set_status(n):
        replies.append(d.setter(b"alice\r\nset %d\r\n" % n, timeout=30))

    setters = [threading.Thread(target=set_status, args=(n,)) for n in range(6)]
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        for setter in setters:
            setter.start()
        wait_until(lambda: d.metric("fingerd_pool_threads_busy") == 2 and
                   d.metric("fingerd_pool_queue_depth") == 4,
                   what="two sets waiting on the parent, four waiting for a thread")
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert d.finger(b"/W bob\r\n").startswith(b"Login: bob\r\n")
        assert replies == [], "answered while every set still waits"
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
        for setter in setters:
            setter.join(60)
    assert len(replies) == 6 and all(reply == b"OK\r\n" or reply.startswith(b"ERROR")
                                     for reply in replies), replies


def writer_of(daemon_pid):
    """The pid of the daemon's users file writer: its one child that runs as root (the
    worker runs as nobody)."""
    def find():
        pids = [pid for pid in children(daemon_pid)
                if proc_status(pid)["Uid"].split()[0] == "0"]
        return pids[0] if len(pids) == 1 else None
    return wait_until(find, what="the users file writer")


def ctl_set(daemon, user, status):
    return subprocess.Popen([sys.executable, "-m", "fingerd.ctl", "-c", daemon.config_file,
                             "set", user, status], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_root
@pytest.mark.parametrize("renamed", [False, True], ids=["before_rename", "after_rename"])
def test_a_set_whose_writer_is_killed_is_answered_as_far_as_the_rename_went(
        make_daemon, tmp_path, renamed):
    """The writer child is killed (OOM, a crash) in an fsync that never returns: before
    its rename (the new file's), nothing changed and the client is told ERROR; after it
    (the directory's), the file holds the new status, ERROR would be a lie, and the
    client is told nothing, as for any set whose outcome is unknown. The parent answers
    from what the child said before it renamed, never looking at the disk."""
    d = make_daemon().start(env=run_first(str(tmp_path / "site"),
                                          stalled_in_a_daemon(of_directory=renamed)))
    before = os.stat(d.users_file)
    told = ctl_set(d, "alice", "Cut short")
    try:
        if renamed:
            wait_until(lambda: os.stat(d.users_file).st_ino != before.st_ino,
                       what="the new users file renamed into place")
        else:
            wait_until(lambda: [n for n in os.listdir(d.dir) if n.endswith(".tmp")],
                       what="the new users file being written")
        os.kill(writer_of(d.proc.pid), signal.SIGKILL)
        out, err = told.communicate(timeout=30)
    finally:
        if told.poll() is None:
            told.kill()
            told.wait()
    assert told.returncode == 1 and out == ""
    assert d.metric("fingerd_requests_total", service="setter", outcome="failed") == 1
    if renamed:
        assert err == ("fingerd-ctl: no answer from the setter: whether the status of "
                       "alice was set is unknown; see with: fingerd-ctl get alice\n")
        wait_until(lambda: "the write was cut short as its new file was renamed into place; "
                   "whether the status of alice was written is unknown, and the client is "
                   "told nothing" in d.log(), what="the unknown outcome logged")
        wait_until(lambda: d.finger(b"alice\r\n") == b"Cut short\r\n",
                   what="the file read again at the next reload")
    else:
        assert err == "fingerd-ctl: refused: cannot write users file: the write was cut short\n"
        assert os.stat(d.users_file).st_ino == before.st_ino
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
