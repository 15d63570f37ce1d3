"""Running a function in a forked child (as nobody, if need be) and getting its result back,
or how it died."""

import contextlib
import io
import json
import os
import select
import signal
import time
import traceback

from tests.support.accounts import become_nobody


class ChildResult:
    """What ``in_child``'s function returned (``value``), or how the child ended."""

    def __init__(self, value, status, error):
        self.value = value
        self.status = status
        self.error = error

    @property
    def signal(self):
        """The signal that killed the child, or None."""
        return signal.Signals(os.WTERMSIG(self.status)) if os.WIFSIGNALED(self.status) else None

    def __repr__(self):
        return f"ChildResult(value={self.value!r}, signal={self.signal}, error={self.error})"


def in_child(body, timeout=20.0):
    """Run ``body()`` in a forked child; its JSON-able return value comes back.

    The child ends with ``os._exit`` whatever happens, and is killed after
    ``timeout`` seconds. The child cannot fork: ``body`` may be confined.
    """
    pid, read_end = _fork_reporting(body, then=lambda: None)
    try:
        out = _report(pid, read_end, timeout)
    finally:
        _, status = os.waitpid(pid, 0)
    return ChildResult(out.get("value"), status, out.get("error"))


def as_nobody(body, timeout=20.0):
    """``in_child(body)``, the child having first dropped every id to nobody's."""
    return in_child(lambda: (become_nobody(), body())[1], timeout)


def main_as_nobody(main, argv, timeout=60.0):
    """``(exit status, standard error)`` of a command's ``main(argv)`` run as nobody in a
    forked child (this interpreter may be unreadable to nobody, so not a subprocess)."""
    def body():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = main(argv)
        return code, stderr.getvalue()

    result = as_nobody(body, timeout)
    assert result.error is None, result.error
    return tuple(result.value)


@contextlib.contextmanager
def holding_child(body, timeout=20.0):
    """Run ``body()`` in a forked child that then waits, keeping what it opened or
    locked, until the ``with`` block ends; yields what ``body`` returned (JSON-able).

    The child is killed by its pid at the end, or after a minute on its own.
    """
    pid, read_end = _fork_reporting(body, then=lambda: select.select([], [], [], 60.0))
    try:
        out = _report(pid, read_end, timeout)
        assert "error" not in out, out.get("error", "the child said nothing")
        yield out["value"]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _fork_reporting(body, then):
    """A forked child that sends ``body()``'s outcome as JSON, closes the pipe, calls
    ``then()`` and exits; its pid and the pipe's read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                out = {"value": body()}
            except BaseException:
                out = {"error": traceback.format_exc()}
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(write_end, data):]
            os.close(write_end)
            then()
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _report(pid, read_end, timeout):
    """The child's outcome as sent, read until it closes the pipe (killed after
    ``timeout`` seconds); ``{}`` when it sent nothing."""
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    return json.loads(b"".join(chunks)) if chunks else {}
