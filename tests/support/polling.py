"""Waiting for what another process does: poll with a deadline, never a bare sleep."""

import math
import time

import pytest


def _turns(seconds, interval):
    """Iterate about every ``interval`` until ``seconds`` have passed, bounded in count
    too: each turn after the first waits at least ``interval``."""
    deadline = time.monotonic() + seconds
    for turn in range(math.ceil(seconds / interval) + 1):
        if turn:
            time.sleep(interval)
        yield
        if time.monotonic() > deadline:
            return


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    for _ in _turns(timeout, interval):
        value = predicate()
        if value:
            return value
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def during(seconds, interval=0.02):
    """Turns of a loop that checks, for ``seconds``, that something keeps holding.

    For what must last rather than happen: ``for _ in during(1.0): assert ...``.
    """
    return _turns(seconds, interval)
