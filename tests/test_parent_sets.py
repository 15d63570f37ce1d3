"""Sets the root parent carries out for the worker: one the worker gave up on changes
nothing, and a users file the parent itself wrote is not validated again at each set."""

import os
import signal
import subprocess
import sys
import threading

from tests.support import ROOT
from tests.support.polling import wait_until


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


def test_a_set_the_parent_reads_after_the_worker_gave_up_changes_nothing(make_daemon):
    """The parent stopped longer than the worker waits for its answer: the worker cannot
    tell whether the set was written, so the client is told nothing (ERROR would say
    that nothing changed), and the parent, once it runs again, does not carry it out."""
    d = make_daemon(fingerd__request_timeout="30").start()
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
