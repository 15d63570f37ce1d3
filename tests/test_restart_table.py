"""A restarted worker serves the table the previous one served, whatever happened to
the users file meanwhile."""

import os
import signal

import pytest

from tests.support.daemon import run_first
from tests.support.markers import needs_root
from tests.support.polling import wait_until
from tests.support.procfs import children, memory_files, worker_of
from tests.support.set_loops import SetLoops


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


#: Run first by the daemon's interpreter: a worker that finds ``dies-after-load`` in the
#: daemon's directory (named by the variable) exits after reading its users file and
#: before it serves, as a reload's worker that fails late.
DIES_AFTER_LOAD = """\
import os
import fingerd.serving.assembly as assembly
marker = os.environ["DIES_AFTER_LOAD"]
start = assembly.Service.start
def start_unless_marked(self, held=False):
    if os.path.exists(marker):
        os._exit(1)
    start(self, held)
assembly.Service.start = start_unless_marked
"""


@needs_root
def test_a_reloads_worker_that_dies_leaves_the_table_kept_by_the_one_serving(
        make_daemon, tmp_path):
    """It read another users file before it died: the one serving goes on, and its
    successor serves what that one served, not the dead worker's file."""
    d = make_daemon(fingerd__reload_interval="0.2")
    marker = os.path.join(d.dir, "dies-after-load")
    env = run_first(str(tmp_path / "site"), DIES_AFTER_LOAD)
    d.start(env={**env, "DIES_AFTER_LOAD": marker})
    other = os.path.join(d.dir, "other-users")
    with open(other, "wb") as f:
        f.write(b"carol:Elsewhere\n")
    open(marker, "w").close()
    d.reconfigure(fingerd__users_file=other)
    d.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in d.log(), what="the reload refused")
    os.unlink(marker)
    d.reconfigure(fingerd__users_file=d.users_file)
    assert d.setter(b"alice\r\nSet after\r\n") == b"OK\r\n"
    break_bad(d)
    wait_until(lambda: d.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the worker serving noticing the file")
    restart_worker(d)
    assert [d.finger(b"%s\r\n" % name) for name in (b"alice", b"bob", b"carol")] == \
        [b"Set after\r\n", b"Sleeping\r\n", b"No such user\r\n"]
    assert "serving the 2 users the previous worker served" in d.log()


@needs_root
def test_sets_made_through_reloads_are_all_served_by_the_worker_restarted_after_them(
        make_daemon):
    """Each reload starts a worker beside the one serving, and both answer sets for a
    while; the parent keeps the one snapshot the next worker reads, and no other."""
    loops = SetLoops(4)
    d = make_daemon(users=loops.users_file() + b"bob:Sleeping\n", fingerd__threads="8")
    d.start()
    loops.start(d)
    try:
        for reloads in range(1, 6):
            wait_until(lambda: loops.made_at_least(10 * reloads), timeout=30, what="sets")
            old = worker_of(d.proc.pid)
            d.signal(signal.SIGHUP)
            wait_until(lambda: old not in children(d.proc.pid), timeout=30,
                       what=f"reload {reloads} done")
    finally:
        loops.stop()
    loops.check(d.users_file)
    with open(d.users_file, "rb") as f:
        written = f.read().splitlines()

    def served():
        return [user + b":" + d.finger(user + b"\r\n").rstrip(b"\r\n")
                for user in [*loops.users, b"bob"]]

    wait_until(lambda: served() == written, what="every status served")
    assert memory_files(d.proc.pid, "fingerd-users") == 1
    break_bad(d)
    wait_until(lambda: d.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the worker serving noticing the file")
    restart_worker(d)
    assert served() == written
    assert "serving the 5 users the previous worker served" in d.log()
    assert memory_files(d.proc.pid, "fingerd-users") == 1
