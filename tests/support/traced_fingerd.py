"""fingerd run with every call of its own functions recorded, in all its processes.

``python -m tests.support.traced_fingerd CALLS FLAG PYTHON -m fingerd ARGS...`` (as
``Daemon.start(wrapper=...)`` builds it) runs ``fingerd ARGS`` in this process. The
profiler it installs is inherited by every thread and every forked process: the
root parent, the worker (after it drops its privileges and confines itself) and
the users file writer child. While the first byte of FLAG (mapped shared, so
that the test's writes are seen at once in every process) is not 0, each
fingerd function called is appended to CALLS once per caller and value of that
byte, as ``FLAG-BYTE PID THREAD MODULE FUNCTION CALLER``, tab-separated, where
CALLER is the calling function as ``MODULE.FUNCTION``.
"""

import mmap
import os
import runpy
import sys
import threading


class Recorder:
    """The profile function: one line for each function first called under a flag value."""

    def __init__(self, calls: str, flag: str) -> None:
        self._path = calls
        self._fd = os.open(calls, os.O_WRONLY | os.O_APPEND)
        with open(flag, "r+b") as f:
            self._flag = mmap.mmap(f.fileno(), 1)
        self._seen: dict[tuple, int] = {}

    def __call__(self, frame, event, _arg):
        epoch = self._flag[0]
        if event != "call" or not epoch:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("fingerd."):
            return
        caller = frame.f_back
        key = (os.getpid(), threading.current_thread().name, module, frame.f_code.co_name,
               "" if caller is None else
               f"{caller.f_globals.get('__name__', '')}.{caller.f_code.co_name}")
        if self._seen.get(key) == epoch:
            return
        self._seen[key] = epoch
        self._write(("\t".join([str(epoch), *map(str, key)]) + "\n").encode())

    def _write(self, line: bytes) -> None:
        try:
            os.write(self._fd, line)
        except OSError:
            # The worker and the writer child close the descriptors they did not open.
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
            os.write(self._fd, line)


def main() -> None:
    calls, flag, *command = sys.argv[1:]
    recorder = Recorder(calls, flag)
    sys.argv = ["fingerd", *command[command.index("fingerd") + 1:]]
    sys.setprofile(recorder)
    threading.setprofile(recorder)
    runpy.run_module("fingerd", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
