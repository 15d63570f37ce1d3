"""A restarted worker serves the table the previous one served, whatever happened to
the users file meanwhile."""

import os
import signal

import pytest

from tests.support.polling import wait_until
from tests.support.procfs import worker_of


def restart_worker(d):
    """Kill the worker; the pid of the one that replaced it, once it answers."""
    first = worker_of(d.proc.pid)
    os.kill(first, signal.SIGKILL)
    second = worker_of(d.proc.pid, other_than=first)
    wait_until(lambda: d.ready(), what="the new worker serving")
    return second


def break_bad(d):
    with open(d.users_file, "ab") as f:
        f.write(b"not a user line\n")


def remove(d):
    os.unlink(d.users_file)


def lock_out(d):
    os.chmod(d.users_file, 0)


def replace_by_a_link(d):
    target = d.users_file + ".elsewhere"
    os.rename(d.users_file, target)
    os.symlink(target, d.users_file)


@pytest.mark.parametrize("spoil", [break_bad, remove, lock_out, replace_by_a_link],
                         ids=["invalid", "missing", "unreadable", "replaced-by-a-link"])
def test_the_last_good_table_outlives_a_spoilt_file_and_the_worker(make_daemon, spoil):
    d = make_daemon(fingerd__reload_interval="0.2").start()
    assert d.setter(b"alice\r\nSet before\r\n") == b"OK\r\n"
    spoil(d)
    wait_until(lambda: d.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the running worker noticing the file")
    restart_worker(d)
    assert d.finger(b"alice\r\n") == b"Set before\r\n"
    assert d.finger(b"bob\r\n") == b"Sleeping\r\n"
    assert "serving the 2 users the previous worker served" in d.log()
    assert d.metric("fingerd_reloads_total", outcome="failure") == 1
    assert d.log().count("serving the 2 users the previous worker served") == 1, \
        "the file's problem is said once, not again at each check"


def test_a_file_spoilt_and_the_worker_killed_at_once_keeps_the_last_file_read(make_daemon):
    d = make_daemon(fingerd__reload_interval="3600").start()
    break_bad(d)
    restart_worker(d)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert d.metric("fingerd_reloads_total", outcome="failure") == 1


def test_a_fixed_file_is_served_again(make_daemon):
    d = make_daemon(fingerd__reload_interval="0.2").start()
    remove(d)
    restart_worker(d)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    with open(d.users_file + ".new", "wb") as f:
        f.write(b"alice:Back again\n")
    os.rename(d.users_file + ".new", d.users_file)
    wait_until(lambda: d.finger(b"alice\r\n") == b"Back again\r\n", what="the fixed file")
    assert d.finger(b"bob\r\n") == b"No such user\r\n"
