"""Worker log records carried to the parent, which alone writes the logs.

The worker cannot reopen a root-owned log file after logrotate, nor should
it hold one open for writing; so it writes each record as one JSON line to a
pipe, and the parent writes it to wherever the daemon logs.

The parent trusts nothing in that pipe: the worker may be hostile. Of a
record it keeps a level, reduced to one of the five standard ones, and a
message, which it escapes (no control character, newline or invisible
formatting character reaches the log: one record is one line), cuts to a
bounded length and tags ``worker[PID]: ``, so that no worker line reads as
the parent's. Lines beyond a rate are dropped and counted, the count written
as a line of the parent's own. The parent reads a bounded slice of the pipe
a turn of its loop.
"""

import json
import logging
import os
import queue
import threading
import time

from fingerd import limits
from fingerd.token_bucket import TokenBucket

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


#: The levels a worker record keeps; any other is written at ODD_LEVEL.
KNOWN_LEVELS = frozenset({logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                          logging.CRITICAL})
ODD_LEVEL = logging.WARNING
#: Longest last error kept for the startup-failure message.
MAX_LAST_ERROR_CHARS = 512
#: Seconds at least between two notices of lines dropped by the rate limit.
DROP_NOTICE_INTERVAL = 10.0

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

log = logging.getLogger("fingerd")


def _escape_char(ch):
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(text, limit=limits.MAX_WORKER_LOG_CHARS):
    """``text`` as one inert line of at most about ``limit`` characters.

    Control characters (newlines included), Unicode format characters
    (direction overrides, zero-width ones), separators other than the space,
    surrogates and unassigned code points are written as backslash escapes
    (a backslash itself is left alone: text escaped already, as the access
    log's, stays as it was). A longer text keeps its beginning and its end
    (where a traceback says what went wrong) around ``[... N characters cut
    ...]``. The work is bounded by ``limit``, whatever the length of ``text``.
    """
    if len(text) <= limit and text.isprintable():
        return text
    budget = limit // 2
    head, used = [], 0
    for ch in text:
        piece = _escape_char(ch)
        if used + len(piece) > budget:
            break
        head.append(piece)
        used += len(piece)
    if len(head) == len(text):
        return "".join(head)
    budget = limit - used - 40
    tail, used = [], 0
    for ch in reversed(text[len(head):]):
        piece = _escape_char(ch)
        if used + len(piece) > budget:
            break
        tail.append(piece)
        used += len(piece)
    cut = len(text) - len(head) - len(tail)
    if cut == 0:
        return "".join(head) + "".join(reversed(tail))
    return f"{''.join(head)} [... {cut} characters cut ...] {''.join(reversed(tail))}"


class LogRelay:
    """Parent side: reads the pipe and writes each record as a line of its own,
    tagged as the worker's, escaped, bounded and rate-limited."""

    def __init__(self, fd, pid, logger=None, rate=limits.WORKER_LOG_RATE,
                 burst=limits.WORKER_LOG_BURST, clock=time.monotonic, notices=None):
        self.fd = fd
        self.pid = pid
        self._buf = b""
        self._logger = logger or logging.getLogger("fingerd.worker")
        self._notices = notices or log
        self._bucket = TokenBucket(rate, burst, clock())
        self._clock = clock
        self._dropped = 0
        self._noticed_at = None
        self.last_error = None

    @classmethod
    def for_config(cls, config, fd, pid, **kw):
        """A relay whose rate fits ``config``: with the access log on, each request
        is a line, and the limit is a hundred times higher."""
        if getattr(config, "access_log", False):
            kw.setdefault("rate", limits.WORKER_LOG_RATE_ACCESS_LOG)
            kw.setdefault("burst", limits.WORKER_LOG_BURST_ACCESS_LOG)
        return cls(fd, pid, **kw)

    def feed(self):
        """Relay what one read of the pipe gives (at most WORKER_LOG_READ_BYTES);
        False once the worker closed the pipe, when lines dropped are told."""
        try:
            chunk = os.read(self.fd, limits.WORKER_LOG_READ_BYTES)
        except BlockingIOError:
            return True
        if not chunk:
            self._notice_drops()
            return False
        lines = (self._buf + chunk).split(b"\n")
        self._buf = lines.pop()[-4 * MAX_RECORD_BYTES:]
        self._bucket.refill(self._clock())
        for i, line in enumerate(lines):
            if self._bucket.tokens < 1:
                # The rest of this slice is over the limit: counted, never looked at.
                self._dropped += len(lines) - i
                break
            self._emit(line)
        return True

    def _emit(self, line):
        # Counted before it is parsed: a line over the limit costs the parent nothing more.
        cost = 1 + min(len(line), limits.MAX_WORKER_LOG_CHARS) // limits.WORKER_LOG_TOKEN_BYTES
        if not self._bucket.take(cost):
            self._dropped += 1
            return
        level, message = _parse(line)
        if not self._logger.isEnabledFor(level):
            return
        if self._dropped and (self._noticed_at is None or
                              self._clock() - self._noticed_at >= DROP_NOTICE_INTERVAL):
            self._notice_drops()
        if level >= logging.ERROR:
            first = message.split("\n", 1)[0]
            self.last_error = clean(first, MAX_LAST_ERROR_CHARS)
        text = f"worker[{self.pid}]: {clean(message)}"
        # The text is the message itself, never a format: nothing of the worker's is
        # interpolated, and the record has no attribute the worker chose.
        record = self._logger.makeRecord(self._logger.name, level, "(worker)", 0, text, (),
                                         None)
        self._logger.handle(record)

    def _notice_drops(self):
        if self._dropped:
            self._notices.warning("worker %d: %d log lines dropped (rate limit)", self.pid,
                                  self._dropped)
            self._dropped = 0
            self._noticed_at = self._clock()


def _parse(line):
    """``(level, message)`` of one line from the worker; anything odd is a warning."""
    try:
        item = json.loads(line)
        level, message = item["level"], item["message"]
        if not isinstance(message, str):
            raise TypeError("message")
    except Exception:  # a hostile line may raise anything json can: RecursionError too
        return ODD_LEVEL, "unreadable log line: " + line[:200].decode("ascii", "replace")
    if type(level) is not int or level not in KNOWN_LEVELS:
        level = ODD_LEVEL
    return level, message
