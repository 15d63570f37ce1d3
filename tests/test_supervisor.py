"""The parent's pure decisions."""

import os
import signal

from fingerd.process.supervisor import BACKOFF_CAP, backoff_delay, describe_exit


def test_first_death_restarts_at_once():
    assert backoff_delay(1) == 0.0


def test_repeated_deaths_double_the_delay_up_to_the_cap():
    delays = [backoff_delay(n) for n in range(2, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_CAP
    assert delays == sorted(delays)


def wait_status_of(code=None, sig=None):
    pid = os.fork()
    if pid == 0:
        if sig:
            os.kill(os.getpid(), sig)
        os._exit(code or 0)
    return os.waitpid(pid, 0)[1]


def test_exit_statuses_are_described_by_code_or_signal():
    assert describe_exit(wait_status_of(code=3)) == "exited with status 3"
    assert describe_exit(wait_status_of(sig=signal.SIGKILL)) == "killed by SIGKILL"
