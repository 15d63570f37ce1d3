"""Reloading the users file while serving."""

import os
import re
import signal
import time

import pytest

from tests.support.polling import during, wait_until


def replace_file(path, data):
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.replace(path + ".new", path)


def answers(d, query, expected):
    return lambda: d.finger(query) == expected


def test_file_replaced_by_rename_is_read(daemon):
    assert daemon.finger(b"bob\r\n") == b"Sleeping\r\n", "an answer made before the reload"
    replace_file(daemon.users_file, b"alice:Renamed in\n")
    wait_until(answers(daemon, b"alice\r\n", b"Renamed in\r\n"), what="the new status")
    assert daemon.finger(b"bob\r\n") == b"No such user\r\n"


def test_file_edited_in_place_is_read(daemon):
    with open(daemon.users_file, "ab") as f:
        f.write(b"carol:Edited in place\n")
    wait_until(answers(daemon, b"carol\r\n", b"Edited in place\r\n"), what="carol")


@pytest.mark.parametrize("backdated", [False, True], ids=["", "mtime an hour back"])
def test_a_second_edit_in_place_of_the_same_size_is_read(daemon, backdated):
    """Told apart from the first by inequality (an edit may set an older mtime) and not
    only by size or mtime: the second leaves both as the first did."""
    an_hour_ago = time.time_ns() - 3600 * 10**9

    def edit(status):
        with open(daemon.users_file, "r+b") as f:
            f.write(b"alice:" + status + b"\nbob:Sleeping\n")
        if backdated:
            os.utime(daemon.users_file, ns=(an_hour_ago, an_hour_ago))

    edit(b"First edit, same size!")
    wait_until(answers(daemon, b"alice\r\n", b"First edit, same size!\r\n"), what="the first")
    first = os.stat(daemon.users_file)
    edit(b"Then another, the same")
    second = os.stat(daemon.users_file)
    assert (second.st_ino, second.st_size) == (first.st_ino, first.st_size)
    if backdated:
        assert second.st_mtime_ns == first.st_mtime_ns
    wait_until(answers(daemon, b"alice\r\n", b"Then another, the same\r\n"),
               what="the second edit")


def test_bad_file_keeps_old_entries_and_is_logged_once(daemon):
    replace_file(daemon.users_file, b"alice:new\nthis line is bad\n")
    wait_until(lambda: daemon.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the failed reload")
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert daemon.finger(b"bob\r\n") == b"Sleeping\r\n"
    wait_until(lambda: daemon.log().count("expected user:status") >= 1, what="the log line")
    assert daemon.metric("fingerd_users") == 2
    line = f"{daemon.users_file}:2: expected user:status"
    for _ in during(1.0):  # five reload intervals of 0.2 s
        assert daemon.log().count(line) == 1
        assert daemon.metric("fingerd_reloads_total", outcome="failure") == 1


def test_the_last_success_time_moves_on_a_good_read_and_not_on_a_bad_one(daemon):
    def stamp():
        return daemon.metric("fingerd_last_reload_success_timestamp_seconds")

    first = stamp()
    assert 0 < first <= time.time(), "set by the first read"
    replace_file(daemon.users_file, b"alice:new\nthis line is bad\n")
    wait_until(lambda: daemon.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the failed reload")
    assert stamp() == first
    replace_file(daemon.users_file, b"alice:Good again\n")
    wait_until(answers(daemon, b"alice\r\n", b"Good again\r\n"), what="the good read")
    wait_until(lambda: stamp() > first, what="the time of the good read")
    assert stamp() <= time.time()


def test_sighup_reads_the_file_at_once(make_daemon):
    d = make_daemon(fingerd__reload_interval="3600").start()
    with open(d.users_file, "ab") as f:
        f.write(b"dave:After HUP\n")
    d.signal(signal.SIGHUP)
    wait_until(answers(d, b"dave\r\n", b"After HUP\r\n"), timeout=5, what="dave after HUP")


def test_a_hup_refused_because_its_new_worker_cannot_start_reads_the_file_too(make_daemon,
                                                                             ports):
    """The users file is read again at once whether the reload applies or not (CONTRACT
    section 8), and a refusal by a new worker that never became ready is a refusal too:
    here it cannot reach the Redis server named, which nothing serves."""
    pytest.importorskip("redis")
    d = make_daemon(fingerd__reload_interval="3600").start()
    with open(d.users_file, "ab") as f:
        f.write(b"dave:Before the HUP\n")
    d.reconfigure(store__backend="redis", store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    refused = d.ctl("reload")
    assert refused.returncode == 1
    assert re.search(r"reload refused: the new worker \d+ exited with status 78", refused.stderr)
    wait_until(answers(d, b"dave\r\n", b"Before the HUP\r\n"), timeout=5,
               what="dave, read by the worker still serving")


def test_missing_users_file_starts_empty_with_a_warning(make_daemon):
    d = make_daemon(users=None).start()
    assert d.finger(b"alice\r\n") == b"No such user\r\n"
    assert "no users file" in d.log()
    with open(d.users_file, "wb") as f:
        f.write(b"alice:Arrived\n")
    wait_until(answers(d, b"alice\r\n", b"Arrived\r\n"), what="the file to appear")


def test_a_start_without_a_users_file_is_not_a_failed_reload(make_daemon):
    """The warning at start was followed, at the first check of the file, by an ERROR
    and a failed reload counted (FingerdReloadsFailing and FingerdUsersFileStale fired)
    for a start the contract says is made with a warning; a file served and then
    removed is a failure still."""
    d = make_daemon(users=None).start()
    for _ in during(1.0):  # five reload intervals of 0.2 s
        assert d.metric("fingerd_reloads_total", outcome="failure") == 0
        assert "users file missing" not in d.log()
    replace_file(d.users_file, b"alice:Arrived\n")
    wait_until(answers(d, b"alice\r\n", b"Arrived\r\n"), what="the file to appear")
    os.unlink(d.users_file)
    wait_until(lambda: d.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the removal counted as a failed reload")
    assert "users file missing; keeping 1 users" in d.log()


def test_a_unix_socket_a_reload_drops_is_removed_once_its_worker_is_gone(make_daemon,
                                                                         public_dir):
    """Closed without its file, the socket stayed on disk, refusing connections, after
    the reload and after the stop."""
    path = os.path.join(public_dir, "setter.sock")
    d = make_daemon(setter__socket=path).start()
    assert os.path.exists(path)
    d.reconfigure(setter__socket="")
    d.signal(signal.SIGHUP)
    wait_until(lambda: "retires" in d.log() and " exited with status 0" in d.log(),
               what="the worker serving the socket gone")
    wait_until(lambda: not os.path.exists(path), what="the socket's file removed")
    assert d.setter(b"alice\r\nStill set by TCP\r\n") == b"OK\r\n"


def test_a_fixed_file_a_set_reads_first_counts_as_a_good_read(make_daemon):
    """A file fixed after a failed reload, then read whole by a set before the next check
    (which then finds it unchanged): the read is counted and timed as a reload's, or the
    failure would be the metrics' last word (FingerdUsersFileStale)."""
    d = make_daemon(fingerd__reload_interval="3600").start()
    first = d.metric("fingerd_last_reload_success_timestamp_seconds")
    replace_file(d.users_file, b"alice:new\nthis line is bad\n")
    d.signal(signal.SIGHUP)  # its new worker counts from nothing: the failure, then
    wait_until(lambda: d.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the failed reload")
    successes = d.metric("fingerd_reloads_total", outcome="success")
    fixed_at = time.time()
    replace_file(d.users_file, b"alice:Fixed by hand\n")
    assert d.setter(b"bob\r\nSet after the fix\r\n") == b"OK\r\n"
    assert d.finger(b"alice\r\n") == b"Fixed by hand\r\n"
    assert d.metric("fingerd_reloads_total", outcome="success") == successes + 1
    assert first < fixed_at <= d.metric("fingerd_last_reload_success_timestamp_seconds")
    assert f"{d.users_file}: read 2 users" in d.log()
