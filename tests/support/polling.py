"""Waiting for what another process does: poll with a deadline, never a bare sleep."""

import time

import pytest


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
