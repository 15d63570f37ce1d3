"""The worker's pool of threads: each service's slow calls (forwards, sets) hold at most a
quarter of it."""

import logging
import threading

from fingerd.serving.pool import Pool
from tests.support.polling import wait_until


class Calls:
    """Calls that record their start and then wait until released, bounded in time."""

    def __init__(self):
        self.started = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def held(self, name):
        with self.lock:
            self.started.append(name)
        self.release.wait(30)

    def quick(self, name):
        with self.lock:
            self.started.append(name)


def test_slow_calls_hold_a_quarter_of_the_threads_and_the_rest_serve_in_order():
    pool, calls = Pool(8), Calls()
    try:
        for n in range(6):
            pool.submit_slow("finger", calls.held, f"slow {n}")
        wait_until(lambda: len(calls.started) == 2, what="two slow calls running")
        assert (pool.busy(), pool.queued()) == (2, 4)
        for n in range(2):
            pool.submit(calls.quick, f"quick {n}")
        wait_until(lambda: len(calls.started) == 4, what="the quick calls beside them")
        assert sorted(calls.started[2:]) == ["quick 0", "quick 1"]
        assert pool.queued() == 4, "the slow calls still wait, the free threads idle"
        calls.release.set()
        wait_until(lambda: len(calls.started) == 8, what="every slow call")
        slow = [name for name in calls.started if name.startswith("slow")]
        assert slow == [f"slow {n}" for n in range(6)], "in the order submitted"
        wait_until(lambda: pool.busy() == 0 and pool.queued() == 0, what="an idle pool")
    finally:
        calls.release.set()
        assert pool.stop(10)


def test_a_pool_of_one_thread_still_runs_slow_calls():
    pool, calls = Pool(1), Calls()
    calls.release.set()
    try:
        pool.submit_slow("finger", calls.quick, "slow")
        pool.submit(calls.quick, "quick")
        wait_until(lambda: len(calls.started) == 2, what="both calls")
    finally:
        assert pool.stop(10)


def test_a_slow_call_that_fails_is_logged_and_the_next_ones_run(caplog):
    pool, calls = Pool(2), Calls()
    calls.release.set()

    def failing():
        raise RuntimeError("upstream gone mad")

    try:
        with caplog.at_level(logging.ERROR):
            pool.submit_slow("finger", failing)
            for n in range(3):
                pool.submit_slow("finger", calls.quick, f"slow {n}")
            wait_until(lambda: len(calls.started) == 3, what="the slow calls after it")
        assert "upstream gone mad" in caplog.text
        wait_until(lambda: pool.busy() == 0, what="an idle pool")
        pool.submit_slow("finger", calls.quick, "later")
        wait_until(lambda: "later" in calls.started, what="a slow call after them")
    finally:
        assert pool.stop(10)


def test_a_stop_lets_the_slow_calls_waiting_finish():
    pool, calls = Pool(2), Calls()
    for n in range(3):
        pool.submit_slow("finger", calls.held, f"slow {n}")
    wait_until(lambda: len(calls.started) == 1, what="one slow call running")
    threading.Timer(0.2, calls.release.set).start()
    assert pool.stop(20)
    assert calls.started == ["slow 0", "slow 1", "slow 2"]


def test_one_services_slow_calls_never_wait_behind_anothers():
    """Forwards to silent hosts held the one slow half, and a set waited behind them past
    its timeout."""
    pool, calls = Pool(8), Calls()
    try:
        for n in range(6):
            pool.submit_slow("finger", calls.held, f"forward {n}")
        wait_until(lambda: len(calls.started) == 2, what="two forwards running")
        pool.submit_slow("setter", calls.held, "set")
        wait_until(lambda: "set" in calls.started, what="the set beside them")
        assert (pool.busy(), pool.queued()) == (3, 4)
    finally:
        calls.release.set()
        assert pool.stop(10)
