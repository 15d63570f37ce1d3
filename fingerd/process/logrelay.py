"""Worker log records carried to the parent, which alone writes the logs.

The worker cannot reopen a root-owned log file after logrotate, nor should
it hold one open for writing; so it writes each record as one JSON line to a
pipe, and the parent writes it to wherever the daemon logs, under the
worker's pid.
"""

import json
import logging
import os
import queue
import threading

#: Longest record relayed; the rest of a longer one is cut.
MAX_RECORD_BYTES = 16384
#: Records waiting for the pipe at most; past it, records are dropped and counted.
MAX_QUEUED_RECORDS = 1024


def _line(level, message):
    return (json.dumps({"level": level, "message": message}) + "\n").encode()


class PipeHandler(logging.Handler):
    """Worker side: one JSON line a record, written by a thread of its own.

    Logging never blocks serving: a thread that logs only queues the line.
    When the parent does not keep up and the queue is full, records are
    dropped, and the next one that fits is preceded by a warning saying how
    many were lost, once for each run of losses.
    """

    def __init__(self, fd, capacity=MAX_QUEUED_RECORDS):
        super().__init__()
        self.fd = fd
        self._queue = queue.Queue(capacity)
        self._dropped = 0
        self._writer = threading.Thread(target=self._write, name="fingerd-log-relay",
                                        daemon=True)
        self._writer.start()

    def emit(self, record):
        """Called under the handler's lock, so ``_dropped`` needs no other."""
        try:
            data = _line(record.levelno, self.format(record)[:MAX_RECORD_BYTES])
            if self._dropped:
                self._queue.put_nowait(self._dropped_notice())
                self._dropped = 0
            self._queue.put_nowait(data)
        except queue.Full:
            self._dropped += 1
        except Exception:
            self.handleError(record)

    def _dropped_notice(self):
        return _line(logging.WARNING, f"{self._dropped} log records dropped: the parent "
                                      f"did not read them in time")

    def _write(self):
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError:
                return

    def close(self, timeout=2.0):
        """Write what is queued and say what was lost, waiting at most ``timeout``
        seconds, and stop the thread."""
        try:
            with self.lock:
                if self._dropped:
                    self._queue.put(self._dropped_notice(), timeout=timeout)
                    self._dropped = 0
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._writer.join(timeout)
        super().close()


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
