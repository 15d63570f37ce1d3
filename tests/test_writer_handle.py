"""The writer child as the parent sees it: its CPU and I/O priority, set on real children."""

import os
import resource
import select
import signal

import pytest

from fingerd.process.parent import writer_handle
from tests.support.accounts import become_nobody
from tests.support.children import in_child
from tests.support.markers import needs_root, needs_tool
from tests.support.procfs import scheduling


def _fork_waiting():
    """A child that waits, at most a minute, for the signal that ends it; its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            select.select([], [], [], 60.0)
        finally:
            os._exit(0)
    return pid


def _end(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture
def child():
    pid = _fork_waiting()
    yield pid
    _end(pid)


def niceness(pid):
    return os.getpriority(os.PRIO_PROCESS, pid)


@needs_root
@needs_tool("ionice", "util-linux")
def test_a_child_runs_at_sched_idle_its_io_best_effort_at_the_lowest_level(child):
    assert writer_handle.run_behind(child, 10) is None
    assert scheduling(child) == (os.SCHED_IDLE, min(19, niceness(0) + 10),
                                 "best-effort: prio 7")


@needs_root
def test_a_promoted_child_competes_at_its_niceness_until_demoted(child):
    writer_handle.run_behind(child, 10)
    writer_handle.promote_process(child)
    assert os.sched_getscheduler(child) == os.SCHED_OTHER
    assert niceness(child) == min(19, niceness(0) + 10)
    writer_handle.demote_process(child)
    assert os.sched_getscheduler(child) == os.SCHED_IDLE


def test_without_an_ioprio_set_number_a_child_runs_at_its_niceness_only(child, monkeypatch):
    monkeypatch.setattr(writer_handle, "IOPRIO_SET", {})
    assert "no ioprio_set number" in writer_handle.run_behind(child, 10)
    assert os.sched_getscheduler(child) == os.SCHED_OTHER
    assert niceness(child) == min(19, niceness(0) + 10)


@needs_root
def test_without_the_right_to_promote_a_child_runs_at_its_niceness_only():
    def as_nobody():
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        become_nobody()
        pid = _fork_waiting()
        try:
            why = writer_handle.run_behind(pid, 10)
            return why, os.sched_getscheduler(pid), niceness(pid) - niceness(0)
        finally:
            _end(pid)

    result = in_child(as_nobody)
    assert result.error is None
    why, policy, added = result.value
    assert why == (f"neither CAP_SYS_NICE nor an RLIMIT_NICE that lets a late write be "
                   f"promoted; it runs at niceness {min(19, niceness(0) + 10)}")
    assert policy == os.SCHED_OTHER and added == min(10, 19 - niceness(0))
