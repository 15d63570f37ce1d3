"""Reloading the configuration (HUP, ``fingerd-ctl reload``) on a real daemon, as root on
port 79, under a loop of queries: no client sees a refused connection or a lost answer."""

import grp
import os
import re
import signal
import socket
import threading
import time
from collections import Counter

import pytest

from tests.support.net import answer_of, can_connect, exchange, skip_unless_free
from tests.support.polling import wait_until
from tests.support.procfs import children, descriptors, threads, zombies_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binding port 79 needs root")

#: Bounds of one query loop: it is stopped long before either in a passing test.
LOOP_SECONDS = 60.0
LOOP_QUERIES = 50_000


class QueryLoop:
    """A thread asking the finger service on 127.0.0.1:``port`` ``query`` again and again,
    each on a new connection, counting each answer and keeping every failure."""

    def __init__(self, port, query=b"alice\r\n"):
        self.port = port
        self.query = query
        self.answers = Counter()
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        wait_until(lambda: sum(self.answers.values()) + len(self.failures) >= 20,
                   what="the query loop to run")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(LOOP_SECONDS)

    def _run(self):
        deadline = time.monotonic() + LOOP_SECONDS
        for _ in range(LOOP_QUERIES):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                answer = exchange(self.port, self.query, timeout=5)
                if answer:
                    self.answers[answer] += 1
                else:
                    self.failures.append("connection closed without an answer")
            except (OSError, AssertionError) as exc:  # refused, reset, or never closed
                self.failures.append(repr(exc))

    @property
    def count(self):
        return sum(self.answers.values()) + len(self.failures)

    def wait_for_more(self, queries=20):
        """Until ``queries`` more were asked: the loop ran on after a change."""
        target = self.count + queries
        wait_until(lambda: self.count >= target, what="more queries")


def served_by(result):
    """The pid of the worker ``fingerd-ctl reload`` says serves the configuration applied."""
    return int(re.search(r"worker (\d+) serves it", result.stdout).group(1))


@pytest.fixture
def on_port_79(make_daemon):
    skip_unless_free("127.0.0.1", 79)
    return make_daemon().listen("finger", "127.0.0.1:79").start()


def reload_under_queries(daemon, query=b"alice\r\n", **changes):
    """Change the configuration and reload it while queries run; the loop's answers and
    what ``fingerd-ctl reload`` printed."""
    with QueryLoop(79, query) as loop:
        daemon.reconfigure(**changes)
        result = daemon.ctl("reload")
        loop.wait_for_more()
    assert loop.failures == [], f"{len(loop.failures)} of {loop.count} queries failed"
    return loop, result


def test_output_rules_change_without_a_failed_query(on_port_79):
    loop, result = reload_under_queries(on_port_79, output__replace="Happy => Glad")
    assert result.returncode == 0, result.stderr
    assert set(loop.answers) == {b"Happy and well\r\n", b"Glad and well\r\n"}
    assert on_port_79.finger(b"alice\r\n") == b"Glad and well\r\n"
    assert on_port_79.metric("fingerd_config_reloads_total", outcome="success") == 1
    assert on_port_79.metric("fingerd_config_reloads_total", outcome="failure") == 0


def test_list_users_changes_without_a_failed_query(on_port_79):
    before = on_port_79.finger(b"\r\n")
    loop, result = reload_under_queries(on_port_79, query=b"\r\n", finger__list_users="yes")
    assert result.returncode == 0, result.stderr
    after = on_port_79.finger(b"\r\n")
    assert b"alice" not in before and b"alice" in after and b"bob" in after
    assert set(loop.answers) == {before, after}


def test_threads_change_without_a_failed_query(on_port_79):
    old = on_port_79.metric("fingerd_worker_restarts_total")
    first = int(re.search(r"started worker (\d+)", on_port_79.log()).group(1))
    before = threads(first)
    loop, result = reload_under_queries(on_port_79, fingerd__threads="12")
    assert result.returncode == 0, result.stderr
    new = served_by(result)
    assert new != first and threads(new) - before == 12 - 4
    wait_until(lambda: not os.path.exists(f"/proc/{first}"), what="the old worker to exit")
    assert on_port_79.metric("fingerd_worker_restarts_total") == old, "no restart counted"


def test_a_listen_address_added_and_one_removed_without_a_failed_query(make_daemon, ports):
    skip_unless_free("127.0.0.1", 79)
    dropped, added = ports.take(), ports.take()
    daemon = make_daemon().listen("finger", "127.0.0.1:79", f"127.0.0.1:{dropped}").start()
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert not can_connect(added)
    loop, result = reload_under_queries(daemon, finger__listen=f"127.0.0.1:79, 127.0.0.1:{added}")
    assert result.returncode == 0, result.stderr
    assert set(loop.answers) == {b"Happy and well\r\n"}
    daemon.finger_port = added
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
    wait_until(lambda: not can_connect(dropped), what="the dropped address to be closed")


def test_an_invalid_configuration_is_refused_and_the_old_one_kept(on_port_79):
    first = int(re.search(r"started worker (\d+)", on_port_79.log()).group(1))
    loop, result = reload_under_queries(on_port_79, output__replace="Happy => Glad",
                                        finger__list_users="maybe")
    assert result.returncode == 1
    problem = f"{on_port_79.config_file}:"
    assert "reload refused: " + problem in result.stderr and "[finger] list_users" in result.stderr
    assert set(loop.answers) == {b"Happy and well\r\n"}, "the old rules still apply"
    assert os.path.exists(f"/proc/{first}"), "the worker serving goes on serving"
    assert on_port_79.metric("fingerd_config_reloads_total", outcome="failure") == 1
    assert on_port_79.metric("fingerd_config_reloads_total", outcome="success") == 0
    errors = [line for line in on_port_79.log().splitlines() if "reload refused" in line]
    assert len(errors) == 1 and re.search(r"ERROR \S+fingerd\.conf:\d+: \[finger\] list_users",
                                          errors[0])


def test_an_address_another_process_holds_is_refused_and_nothing_changes(on_port_79, ports):
    taken = ports.take()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        loop, result = reload_under_queries(
            on_port_79, finger__listen=f"127.0.0.1:79, 127.0.0.1:{taken}",
            output__replace="Happy => Glad")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken} ([finger] listen): address already in use" \
        in result.stderr
    assert set(loop.answers) == {b"Happy and well\r\n"}


def test_statuses_set_during_reloads_are_not_lost(on_port_79):
    """Sets in a loop while the configuration is reloaded three times: each one answered
    OK is served after, whichever worker took it."""
    done = []
    stop = threading.Event()

    def set_statuses():
        for n in range(2000):
            if stop.is_set():
                return
            status = f"status {n}"
            answer = on_port_79.setter(f"alice\r\n{status}\r\n".encode())
            if answer == b"OK\r\n":
                done.append(status)

    setter = threading.Thread(target=set_statuses, daemon=True)
    setter.start()
    try:
        for size in ("5", "6", "7"):
            wait_until(lambda n=len(done): len(done) > n, what="a set")
            on_port_79.reconfigure(fingerd__threads=size)
            assert on_port_79.ctl("reload").returncode == 0
        wait_until(lambda n=len(done): len(done) > n + 3, what="sets after the reloads")
    finally:
        stop.set()
        setter.join(30)
    last = done[-1].encode()
    wait_until(lambda: on_port_79.finger(b"alice\r\n") == last + b"\r\n",
               what=f"the last status set ({last!r}) to be served")
    with open(on_port_79.users_file, "rb") as f:
        assert b"alice:" + last + b"\n" in f.read()


def test_reloads_in_a_row_leave_one_worker_and_the_parent_as_they_found_it(on_port_79):
    """Five reloads, each by a new worker: the retired ones end and are reaped, and the
    parent holds the descriptors it held before."""
    parent = on_port_79.proc.pid
    before = descriptors(parent)
    serving = set()
    for size in ("5", "6", "7", "8", "5"):
        on_port_79.reconfigure(fingerd__threads=size)
        result = on_port_79.ctl("reload")
        assert result.returncode == 0, result.stdout + result.stderr
        serving.add(served_by(result))
    assert len(serving) == 5, "each reload by a new worker"
    last = served_by(result)
    wait_until(lambda: children(parent) == [last] and not zombies_of(parent)
               and descriptors(parent) == before,
               what=f"worker {last} alone, nothing unreaped, the parent's {before} descriptors")
    assert on_port_79.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_the_pidfile_and_log_file_wait_for_a_restart_and_the_rest_applies(on_port_79):
    moved = os.path.join(on_port_79.dir, "elsewhere.pid")
    on_port_79.reconfigure(fingerd__pidfile=moved, output__replace="Happy => Glad")
    on_port_79.signal(signal.SIGHUP)
    wait_until(lambda: on_port_79.finger(b"alice\r\n") == b"Glad and well\r\n",
               what="the rest of the change")
    assert not os.path.exists(moved) and os.path.exists(on_port_79.pidfile)
    line = [line for line in on_port_79.log().splitlines() if "next restart" in line]
    assert len(line) == 1 and f"[fingerd] pidfile = {moved} takes effect at the next restart" \
        in line[0]


def test_reload_without_waiting_only_sends_the_signal(on_port_79):
    result = on_port_79.ctl("reload", "--no-wait")
    assert result.returncode == 0
    assert "was asked to read its configuration and users file again" in result.stdout
    wait_until(lambda: "applied: worker" in on_port_79.log(), what="the reload")


def remove(path):
    os.unlink(path)


def make_invalid(path):
    with open(path, "ab") as f:
        f.write(b"not a valid line\n")


def replace_by_a_directory(path):
    os.unlink(path)
    os.mkdir(path)


def lock_out(path):
    """Mode 000: the worker's account cannot read it (root still could)."""
    os.chmod(path, 0)


def replace_by_a_link(path):
    os.rename(path, path + ".elsewhere")
    os.symlink(path + ".elsewhere", path)


#: How each kind of spoilt users file reads in the reload's outcome after its name.
SPOILT = {"missing": (remove, ": No such file or directory"),
          "invalid": (make_invalid, ":3: expected user:status"),
          "directory": (replace_by_a_directory, ": Is a directory"),
          "unreadable": (lock_out, ": Permission denied"),
          "link": (replace_by_a_link, ": the path is a symbolic link")}


@pytest.fixture
def still(make_daemon):
    """A daemon whose users file only a HUP reads, so that each reload reads it once."""
    return make_daemon(fingerd__reload_interval="3600").start()


@pytest.mark.parametrize("kind", SPOILT)
def test_a_spoilt_users_file_keeps_the_entries_and_the_configuration_applies(still, kind):
    spoil, problem = SPOILT[kind]
    assert still.metric("fingerd_reloads_total", outcome="failure") == 0
    spoil(still.users_file)
    still.reconfigure(output__replace="Happy => Glad")
    result = still.ctl("reload")
    assert result.returncode == 0, result.stderr
    said = f"users file rejected: {still.users_file}{problem}"
    assert re.search(r"configuration \S+ applied: worker \d+ serves it; " + re.escape(said)
                     + r".*; 2 users still served$", result.stdout.strip()), result.stdout
    # The old worker, sent TERM, may take one more client before it stops accepting.
    wait_until(lambda: still.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the new worker alone to serve, with one failed read counted")
    assert still.finger(b"alice\r\n") == b"Glad and well\r\n", "entries and rules both"
    assert still.finger(b"bob\r\n") == b"Sleeping\r\n"
    assert still.metric("fingerd_reloads_total", outcome="failure") == 1
    assert still.metric("fingerd_config_reloads_total", outcome="success") == 1
    assert still.metric("fingerd_config_reloads_total", outcome="failure") == 0
    log = still.log()
    assert [line for line in log.splitlines() if "users file rejected" in line] == [
        line for line in log.splitlines() if re.search(r"ERROR " + re.escape(said), line)]
    assert log.count("users file rejected") == 1, log
    assert "CRITICAL" not in log and "refused" not in log, log


@pytest.mark.parametrize("kind", SPOILT)
def test_a_hup_alone_keeps_the_entries_of_a_spoilt_users_file(still, kind):
    """Without fingerd-ctl, and with the configuration unchanged, the same: the worker
    started for the HUP serves what the old one did."""
    spoil, problem = SPOILT[kind]
    spoil(still.users_file)
    still.signal(signal.SIGHUP)
    wait_until(lambda: "applied: worker" in still.log(), what="the reload")
    wait_until(lambda: still.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the new worker alone to serve, with one failed read counted")
    assert still.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert still.finger(b"bob\r\n") == b"Sleeping\r\n"
    assert still.log().count(f"users file rejected: {still.users_file}{problem}") == 1


def test_a_status_set_just_before_the_file_goes_is_still_served_after_the_reload(still):
    assert still.setter(b"alice\r\nSet before\r\n") == b"OK\r\n"
    os.unlink(still.users_file)
    result = still.ctl("reload")
    assert result.returncode == 0 and "2 users still served" in result.stdout, result.stdout
    wait_until(lambda: still.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the new worker alone to serve")
    assert still.finger(b"alice\r\n") == b"Set before\r\n"
    assert still.finger(b"bob\r\n") == b"Sleeping\r\n"


@pytest.mark.parametrize("content", [None, b"not a valid line\n"], ids=["missing", "invalid"])
def test_another_users_file_that_cannot_be_served_keeps_the_entries_served(still, content):
    moved = os.path.join(still.dir, "users.new")
    if content is not None:
        with open(moved, "wb") as f:
            f.write(content)
    still.reconfigure(fingerd__users_file=moved)
    result = still.ctl("reload")
    assert result.returncode == 0, result.stderr
    assert f"users file rejected: {moved}:" in result.stdout
    wait_until(lambda: still.metric("fingerd_reloads_total", outcome="failure") == 1,
               what="the new worker alone to serve")
    assert still.finger(b"alice\r\n") == b"Happy and well\r\n"
    with open(moved + ".tmp", "wb") as f:
        f.write(b"alice:Moved\n")
    os.rename(moved + ".tmp", moved)
    assert still.ctl("reload").returncode == 0
    wait_until(lambda: still.finger(b"alice\r\n") == b"Moved\r\n", what="the new file")
    assert still.finger(b"bob\r\n") == b"No such user\r\n"


def test_a_set_while_the_users_file_is_missing_is_refused_and_loses_no_entry(still):
    """The entries served are in no file: a set creating one with its line alone would
    lose the others at the next read. It is refused until the file is back."""
    os.unlink(still.users_file)
    assert still.ctl("reload").returncode == 0
    assert still.setter(b"alice\r\nAnything\r\n") == \
        b"ERROR users file missing; restore it first\r\n"
    assert not os.path.exists(still.users_file)
    assert still.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert still.finger(b"bob\r\n") == b"Sleeping\r\n"
    with open(still.users_file, "wb") as f:
        f.write(b"alice:Back\nbob:Sleeping\n")
    result = still.ctl("reload")
    assert result.returncode == 0 and "users file" not in result.stdout, result.stdout
    assert still.setter(b"alice\r\nSet again\r\n") == b"OK\r\n"
    assert still.finger(b"alice\r\n") == b"Set again\r\n"
    assert still.finger(b"bob\r\n") == b"Sleeping\r\n"


def test_a_users_file_the_new_account_cannot_read_keeps_the_entries(on_port_79):
    """The users file is the old account's group's alone: the new worker, as `daemon`,
    cannot read it; the configuration applies and the entries served are kept."""
    os.chown(on_port_79.users_file, 0, grp.getgrnam("nogroup").gr_gid)
    os.chmod(on_port_79.users_file, 0o640)
    loop, result = reload_under_queries(on_port_79, fingerd__user="daemon",
                                        output__replace="Happy => Glad")
    assert result.returncode == 0, result.stderr
    assert re.search(r"applied: worker \d+ serves it; users file rejected: \S+/users: "
                     r"Permission denied; 2 users still served", result.stdout), result.stdout
    assert set(loop.answers) <= {b"Happy and well\r\n", b"Glad and well\r\n"}
    assert on_port_79.finger(b"alice\r\n") == b"Glad and well\r\n"


def test_an_invalid_users_file_under_queries_keeps_the_entries(on_port_79):
    make_invalid(on_port_79.users_file)
    loop, result = reload_under_queries(on_port_79, output__replace="Happy => Glad")
    assert result.returncode == 0, result.stderr
    assert f"users file rejected: {on_port_79.users_file}:3:" in result.stdout
    assert set(loop.answers) <= {b"Happy and well\r\n", b"Glad and well\r\n"}
    assert on_port_79.finger(b"alice\r\n") == b"Glad and well\r\n"


def test_a_client_the_old_worker_holds_gets_its_answer_after_the_switch(on_port_79):
    """Connected before the reload, its query finished only once the new worker serves:
    the old worker, retiring, still answers it, by the rules it had."""
    held = socket.create_connection(("127.0.0.1", 79), timeout=10)
    with held:
        held.sendall(b"ali")
        wait_until(lambda: on_port_79.metric("fingerd_connections_active") == 1,
                   what="the old worker to hold the client")
        on_port_79.reconfigure(output__replace="Happy => Glad")
        result = on_port_79.ctl("reload")
        assert result.returncode == 0, result.stderr
        old = int(re.search(r"started worker (\d+)", on_port_79.log()).group(1))
        assert os.path.exists(f"/proc/{old}"), "the old worker waits for its client"
        held.sendall(b"ce\r\n")
        assert answer_of(held) == b"Happy and well\r\n"
    assert on_port_79.finger(b"alice\r\n") == b"Glad and well\r\n"
    wait_until(lambda: not os.path.exists(f"/proc/{old}"), what="the old worker to exit")


def test_a_storm_of_hups_is_a_few_reloads_in_a_row_and_no_failed_query(on_port_79):
    """HUPs that come while a reload is under way make one more reload after it, not one
    each: 200 of them end with one worker serving, none killed, no query failed."""
    with QueryLoop(79) as loop:
        for _ in range(200):
            on_port_79.signal(signal.SIGHUP)
        wait_until(lambda: "applied: worker" in on_port_79.log(), what="a reload")
        wait_until(lambda: on_port_79.log().count("started worker")
                   == 1 + on_port_79.log().count("applied: worker")
                   and on_port_79.log().count("retires") == on_port_79.log().count(
                       "exited with status 0"), timeout=30, what="the reloads to be over")
        loop.wait_for_more()
    assert loop.failures == [], f"{len(loop.failures)} of {loop.count} queries failed"
    reloads = on_port_79.log().count("applied: worker")
    assert 1 <= reloads <= 10 and "killing" not in on_port_79.log(), reloads
    assert on_port_79.metric("fingerd_worker_restarts_total") == 0
    assert on_port_79.metric("fingerd_config_reloads_total", outcome="success") == reloads
