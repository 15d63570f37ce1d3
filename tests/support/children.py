"""Running a function in a forked child and getting its result back, or how it died."""

import json
import os
import select
import signal
import time
import traceback


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
        finally:
            os._exit(0)
    os.close(write_end)
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
        _, status = os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks)) if chunks else {}
    return ChildResult(out.get("value"), status, out.get("error"))
