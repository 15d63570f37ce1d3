"""Worker log records carried to the parent, which alone writes the logs.

The worker cannot reopen a root-owned log file after logrotate, nor should
it hold one open for writing; so it writes each record as one JSON line to a
pipe, and the parent writes it to wherever the daemon logs, under the
worker's pid.
"""

import json
import logging
import os

#: Longest record relayed; the rest of a longer one is cut.
MAX_RECORD_BYTES = 16384


class PipeHandler(logging.Handler):
    """Worker side: one JSON line a record, written whole under the handler's lock."""

    def __init__(self, fd):
        super().__init__()
        self.fd = fd

    def emit(self, record):
        try:
            message = self.format(record)[:MAX_RECORD_BYTES]
            data = (json.dumps({"level": record.levelno, "message": message}) + "\n").encode()
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except Exception:
            self.handleError(record)


class LogRelay:
    """Parent side: reads the pipe and logs each record as the worker's."""

    def __init__(self, fd, pid, logger=None):
        self.fd = fd
        self.pid = pid
        self._buf = b""
        self._logger = logger or logging.getLogger("fingerd.worker")
        self.last_error = None

    def feed(self):
        """Relay what is readable now; False once the worker closed the pipe."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        lines = (self._buf + chunk).split(b"\n")
        self._buf = lines.pop()[-4 * MAX_RECORD_BYTES:]
        for line in lines:
            self._emit(line)
        return True

    def _emit(self, line):
        try:
            item = json.loads(line)
            level, message = int(item["level"]), str(item["message"])
        except (ValueError, KeyError, TypeError):
            level, message = logging.WARNING, f"unreadable log line: {line[:200]!r}"
        if level >= logging.ERROR:
            self.last_error = message.splitlines()[0] if message else message
        record = self._logger.makeRecord(self._logger.name, level, "(worker)", 0, "%s",
                                         (message,), None)
        record.process = self.pid
        self._logger.handle(record)
