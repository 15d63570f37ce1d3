"""The parent hears from its worker every second: a worker stopped or wedged is replaced,
and one that served is not held back by the restart backoff when killed from outside."""

import os
import signal
import socket

from fingerd.process.parent.monitor import HEARTBEAT_TIMEOUT
from tests.support.children import as_nobody
from tests.support.markers import needs_root
from tests.support.net import answer_of
from tests.support.polling import during, wait_until
from tests.support.procfs import proc_status, worker_of


def stop_as_the_workers_account(pid):
    """``kill -STOP pid`` from another process of the worker's account (nobody), as any
    other service running as that account could."""
    result = as_nobody(lambda: os.kill(pid, signal.SIGSTOP))
    assert result.error is None, f"nobody could not stop the worker: {result.error}"


@needs_root
def test_a_worker_stopped_by_another_process_of_its_account_is_replaced(make_daemon):
    d = make_daemon(fingerd__request_timeout="3").start()
    first = worker_of(d.proc.pid)
    stop_as_the_workers_account(first)
    second = worker_of(d.proc.pid, other_than=first)
    wait_until(d.ready, what="the new worker serving", timeout=20)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert f"worker {first} gave no sign of life for 5 s (stopped or wedged); killing it" \
        in d.log()
    assert f"worker {first} killed by SIGKILL" in d.log()
    assert proc_status(second)["State"].startswith(("S", "R"))


def test_a_worker_that_served_is_restarted_at_once_however_often_it_is_killed(make_daemon):
    d = make_daemon().start()
    worker = worker_of(d.proc.pid)
    for _ in range(4):
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        wait_until(lambda: f"worker {worker} has answered requests" in d.log(),
                   what="a heartbeat telling the parent the worker served")
        os.kill(worker, signal.SIGKILL)
        worker = worker_of(d.proc.pid, other_than=worker)
        wait_until(d.ready, what="the next worker serving")
    assert "keeps dying" not in d.log()
    assert d.metric("fingerd_worker_restarts_total") == 4


def test_a_worker_killed_as_soon_as_it_answered_is_restarted_at_once(make_daemon):
    """It says it answered before its first client has the whole answer, not at its next
    heartbeat (a second later at most): killed within that second, each worker served
    all the same, and the kills do not push the next start back."""
    d = make_daemon().start()
    worker = worker_of(d.proc.pid)
    for _ in range(4):
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        os.kill(worker, signal.SIGKILL)
        worker = worker_of(d.proc.pid, other_than=worker)
        wait_until(d.ready, what="the next worker serving")
    assert "keeps dying" not in d.log()
    assert d.metric("fingerd_worker_restarts_total") == 4


def test_a_parent_stopped_past_the_heartbeat_deadline_reads_the_worker_before_judging_it(
        make_daemon):
    """A parent stopped (or stalled on a log write) for longer than HEARTBEAT_TIMEOUT finds
    the worker's heartbeats waiting once it runs again: the worker served all along, and
    a client whose query spans the stop is answered."""
    d = make_daemon(fingerd__request_timeout="10").start()
    worker = worker_of(d.proc.pid)
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: proc_status(d.proc.pid)["State"].startswith("T"),
                   what="the parent to stop")
        with socket.create_connection(("127.0.0.1", d.finger_port), 10) as client:
            client.sendall(b"ali")
            for _ in during(HEARTBEAT_TIMEOUT + 1.5, interval=0.2):
                assert proc_status(d.proc.pid)["State"].startswith("T"), "the parent stopped"
            os.kill(d.proc.pid, signal.SIGCONT)
            client.sendall(b"ce\r\n")
            assert answer_of(client) == b"Happy and well\r\n"
        for _ in during(2.0, interval=0.1):
            assert worker_of(d.proc.pid) == worker, "the worker that served is kept"
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert "gave no sign of life" not in d.log()
    assert d.metric("fingerd_worker_restarts_total") == 0
