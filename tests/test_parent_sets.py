"""Sets the root parent carries out for the worker: one the worker gave up on changes
nothing, and a users file the parent itself wrote is not validated again at each set."""

import os
import signal

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
    """The parent stopped longer than the worker waits for its answer: the client is
    told the set failed, and the parent, once it runs again, does not carry it out."""
    d = make_daemon(fingerd__request_timeout="30").start()
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        answer = d.setter(b"alice\r\nset while the parent was stopped\r\n", timeout=30)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert answer.startswith(b"ERROR"), answer
    # Requests are carried out in the order they come: once a later one is written,
    # the late one has been read, and dropped.
    set_until_ok(d, b"bob\r\nawake\r\n")
    assert d.finger(b"bob\r\n") == b"awake\r\n"
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    with open(d.users_file, "rb") as f:
        assert f.read() == b"alice:Happy and well\nbob:awake\n"
