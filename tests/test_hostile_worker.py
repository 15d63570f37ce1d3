"""A worker that does not behave cannot make the root parent wait (docs/guide.md, "Processes
and signals"): a real parent, its signals and selector, with test bodies as workers
(tests/support/hostile_parent.py)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fingerd.process.channel import MAX_QUEUED_REPLIES
from fingerd.process.parent.monitor import MAX_WAITING_SETS
from fingerd.process.parent.supervisor import WRITE_STOP_WAIT
from fingerd.users import fileio
from tests.support import ROOT
from tests.support.polling import during, wait_until
from tests.support.procfs import children

#: Seconds the parent has to act on a signal, whatever its worker does.
PROMPT = 1.0


class Parent:
    """tests.support.hostile_parent in its own process, ended by its pid."""

    def __init__(self, directory, body, write_delay=0.0, stop_wait=None):
        self.dir = str(directory)
        self.log_file = os.path.join(self.dir, "parent.log")
        self.users_file = os.path.join(self.dir, "users")
        args = [sys.executable, "-m", "tests.support.hostile_parent", body, self.dir,
                str(write_delay)] + ([str(stop_wait)] if stop_wait is not None else [])
        self._out = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._out)
        wait_until(lambda: "ready" in self.log(), what="the first worker to be ready")

    def log(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def answers(self, signum, line, within=PROMPT):
        """Send ``signum``; the seconds until the parent logs ``line`` once more."""
        before = self.log().count(line)
        started = time.monotonic()
        self.proc.send_signal(signum)
        wait_until(lambda: self.log().count(line) > before, timeout=within, interval=0.005,
                   what=f"the parent to log {line!r}")
        return time.monotonic() - started

    def stop(self, within=PROMPT):
        """TERM; the exit status, which must come within ``within`` seconds."""
        self.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: self.proc.poll() is not None, timeout=within, interval=0.01,
                   what="the parent to exit after TERM")
        return self.proc.returncode

    def end(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def start_parent(tmp_path):
    parents = []

    def start(body, **kw):
        parents.append(Parent(tmp_path, body, **kw))
        return parents[-1]

    yield start
    for parent in parents:
        parent.end()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("body, reason", [
    ("flood-sets", f"sent more than {MAX_WAITING_SETS} set requests without waiting for "
                   f"their answers"),
    ("no-read", f"stopped reading its channel ({MAX_QUEUED_REPLIES} replies waiting)"),
])
def test_a_worker_that_floods_or_stops_reading_is_killed_replaced_and_logged_once(
        start_parent, body, reason):
    parent = start_parent(body)
    wait_until(lambda: parent.log().count("started worker") == 2, what="a second worker")
    log = parent.log()
    assert log.count("killing it") == 1
    assert f"{reason}; killing it" in log
    assert "killed by SIGKILL" in log
    for _ in during(0.5):
        assert parent.log().count("killing it") == 1
    parent.answers(signal.SIGUSR1, "SIGUSR1: log file reopened")
    assert parent.stop() == 0


def test_the_parent_answers_signals_at_once_while_a_worker_floods_it(start_parent):
    parent = start_parent("busy")
    for _ in range(5):
        parent.answers(signal.SIGUSR1, "SIGUSR1: log file reopened")
        parent.answers(signal.SIGHUP, "SIGHUP: the worker reads the users file again")
    assert "killing it" not in parent.log(), "a busy worker that reads its replies is kept"
    assert parent.stop() == 0


def writer_of(parent):
    """The pid of the parent's child writing the users file: the one that is not the
    worker (the worker's pid is in the log)."""
    def find():
        worker = int(parent.log().split("started worker ")[1].split()[0])
        others = [pid for pid in children(parent.proc.pid) if pid != worker]
        return others[0] if others else None
    return wait_until(find, what="the child writing the users file")


def test_signals_are_answered_while_a_set_is_slowly_written(start_parent, tmp_path):
    (tmp_path / "users").write_bytes(b"alice:Happy\n")
    parent = start_parent("one-set", write_delay=2.0)
    writer = writer_of(parent)
    while alive(writer) and not (tmp_path / "reply").exists():
        parent.answers(signal.SIGUSR1, "SIGUSR1: log file reopened")
        parent.answers(signal.SIGHUP, "SIGHUP: the worker reads the users file again")
        parent.proc.send_signal(signal.SIGCHLD)
    wait_until(lambda: (tmp_path / "reply").exists(), what="the worker's answer")
    assert '"ok": true' in (tmp_path / "reply").read_text()
    assert (tmp_path / "users").read_bytes() == b"alice:Set slowly\n"
    assert parent.stop() == 0


def test_term_during_a_write_waits_for_it_and_leaves_nothing_running(start_parent, tmp_path):
    (tmp_path / "users").write_bytes(b"alice:Happy\n")
    parent = start_parent("one-set", write_delay=2.0)
    writer = writer_of(parent)
    assert parent.stop(within=2.0 + WRITE_STOP_WAIT) == 0
    assert (tmp_path / "users").read_bytes() == b"alice:Set slowly\n"
    assert not alive(writer)


def test_a_write_longer_than_the_stop_wait_is_killed_leaving_the_old_file_whole(
        start_parent, tmp_path):
    (tmp_path / "users").write_bytes(b"alice:Happy\n")
    parent = start_parent("one-set", write_delay=60.0, stop_wait=0.5)
    writer = writer_of(parent)
    wait_until(lambda: temporaries(tmp_path), what="the new file beside the old one")
    assert parent.stop(within=0.5 + 2 * PROMPT) == 0
    assert not alive(writer)
    assert (tmp_path / "users").read_bytes() == b"alice:Happy\n"
    assert "users file still being written" in parent.log()
    assert f"users file writer {writer} killed by SIGKILL" in parent.log()
    # Killed between its new file and the rename, it left that file, which the next
    # start removes (test_users_file_safety shows a daemon's start doing it).
    left = temporaries(tmp_path)
    assert len(left) == 1 and (tmp_path / left[0]).read_bytes() == b"alice:Set slowly\n"
    assert fileio.remove_temporaries(str(tmp_path / "users")) == [str(tmp_path / left[0])]
    assert not temporaries(tmp_path)


def temporaries(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]
