"""Worker log records carried to the parent, which alone writes the logs.

The worker cannot reopen a root-owned log file after logrotate, nor should
it hold one open for writing; so it writes each record as one JSON line to a
pipe, and the parent writes it to wherever the daemon logs.

Access log lines (accesslog.py) travel in batches instead (the pipe's format
and bounds are in ``fingerd.process.logformat``): a few system calls for a
thousand lines rather than for each. A worker killed loses the lines it had not
yet written to the pipe: its last second's, and the batches waiting in it
when the parent had fallen behind.

The parent trusts nothing in that pipe: the worker may be hostile. Of a
record it keeps a level, reduced to one of the five standard ones, and a
message, which it escapes (no control character, newline or invisible
formatting character reaches the log: one record is one line), cuts to a
bounded length and tags ``worker[PID]: ``, so that no worker line reads as
the parent's. Lines beyond a rate are dropped and counted, the count written
as a line of the parent's own; records of changes (a status set) have a ration of their
own, so that a flood of others never drops them. The parent reads a bounded slice of the pipe
a turn of its loop. A batch of access lines is checked whole, in a few passes
over its bytes: when every line is a time stamp and printable ASCII, the batch
is tagged and written in one write; else each of its lines is a record.
"""

import logging
import os
import re
import time
from typing import Optional

from fingerd import limits
from fingerd.loghandlers import (
    LOG_FORMAT,
    STAMP_END,
    LineWriter,
    LogFileHandler,
    StderrHandler,
)
from fingerd.process.channel import loads_shallow
from fingerd.process.logformat import (
    ACCESS_BATCH_BYTES,
    ACCESS_LINE_END,
    ACCESS_RECORD_START,
    CHANGE_RECORD_END,
    MAX_RECORD_BYTES,
    clean,
)
from fingerd.token_bucket import TokenBucket

#: What the parent keeps of a record not yet whole: a batch, with room to spare.
MAX_PARTIAL_BYTES = ACCESS_BATCH_BYTES + MAX_RECORD_BYTES

#: The levels a worker record keeps; any other is written at ODD_LEVEL.
KNOWN_LEVELS = frozenset({logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                          logging.CRITICAL})
ODD_LEVEL = logging.WARNING
#: Longest last error kept for the startup-failure message.
MAX_LAST_ERROR_CHARS = 512
#: Seconds at least between two notices of lines dropped by the rate limit.
DROP_NOTICE_INTERVAL = 10.0

log = logging.getLogger("fingerd")


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
        #: The ration of records of changes (CHANGE_RECORD_END), apart from the others'.
        self._changes = TokenBucket(rate, burst, clock())
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
        self._buf = lines.pop()[-MAX_PARTIAL_BYTES:]
        now = self._clock()
        self._bucket.refill(now)
        self._changes.refill(now)
        for i, line in enumerate(lines):
            if self._bucket.tokens < 1:
                # The rest of this slice is over the limit: counted, never parsed; only
                # records of changes, on their own ration, are looked for.
                for rest in lines[i:]:
                    if rest.endswith(CHANGE_RECORD_END):
                        self._emit(rest, self._changes)
                    else:
                        self._dropped += _lines_in(rest)
                break
            if line.startswith(ACCESS_RECORD_START):
                self._emit_access(line)
            elif line.endswith(CHANGE_RECORD_END):
                self._emit(line, self._changes)
            else:
                self._emit(line, self._bucket)
        return True

    def _emit(self, line, bucket):
        # Counted before it is parsed, for all its bytes (reading a line costs the parent in
        # proportion), so that a line over the limit costs it nothing more.
        cost = 1 + len(line) // limits.WORKER_LOG_TOKEN_BYTES
        if not bucket.take(cost):
            self._dropped += 1
            return
        level, message = _parse(line)
        if not self._logger.isEnabledFor(level):
            return
        self._notice_drops_when_due()
        if level >= logging.ERROR:
            first = message.split("\n", 1)[0]
            self.last_error = clean(first, MAX_LAST_ERROR_CHARS)
        self._write_record(level, message)

    def _emit_access(self, record: bytes) -> None:
        """A batch of access lines: paid for a line each (and for each 256 bytes a
        line holds beyond its first 256, on average), checked whole, and written in
        one write when it passes, else a line at a time as any record."""
        count = _lines_in(record)
        beyond = max(0, len(record) - len(ACCESS_RECORD_START) -
                     count * limits.WORKER_LOG_TOKEN_BYTES)
        if not self._bucket.take(count + beyond // limits.WORKER_LOG_TOKEN_BYTES):
            self._dropped += count
            return
        if not self._logger.isEnabledFor(logging.INFO):
            return
        self._notice_drops_when_due()
        handler = self._batch_handler()
        if handler is not None:
            tag = f" fingerd[{os.getpid()}]: INFO worker[{self.pid}]: ".encode()
            written = _as_written(record, count, tag)
            if written is not None:
                handler.write_lines(written)
                return
        for line in record[len(ACCESS_RECORD_START):].split(ACCESS_LINE_END):
            if _ACCESS_LINE.fullmatch(line):
                line = line.partition(_STAMP_END)[2]
            self._write_record(logging.INFO, line.decode("utf-8", "backslashreplace"))

    def _batch_handler(self) -> Optional[LineWriter]:
        """The one handler of the records this relay writes, if it takes lines whole in
        the log's format (the log file, standard error); else None."""
        handlers: list[logging.Handler] = []
        logger: Optional[logging.Logger] = self._logger
        while logger is not None:
            handlers += logger.handlers
            logger = logger.parent if logger.propagate else None
        if len(handlers) != 1:
            return None
        handler = handlers[0]
        if (isinstance(handler, (LogFileHandler, StderrHandler))
                and handler.level <= logging.INFO and not handler.filters
                and handler.formatter is not None and handler.formatter._fmt == LOG_FORMAT):
            return handler
        return None

    def _write_record(self, level: int, message: str) -> None:
        text = f"worker[{self.pid}]: {clean(message)}"
        # The text is the message itself, never a format: nothing of the worker's is
        # interpolated, and the record has no attribute the worker chose.
        record = self._logger.makeRecord(self._logger.name, level, "(worker)", 0, text, (),
                                         None)
        self._logger.handle(record)

    def _notice_drops_when_due(self):
        """Tell the lines dropped, at most once every DROP_NOTICE_INTERVAL seconds."""
        if self._dropped and (self._noticed_at is None or
                              self._clock() - self._noticed_at >= DROP_NOTICE_INTERVAL):
            self._notice_drops()

    def _notice_drops(self):
        if self._dropped:
            self._notices.warning("worker %d: %d log lines dropped (rate limit)", self.pid,
                                  self._dropped)
            self._dropped = 0
            self._noticed_at = self._clock()


#: A batch of access lines the parent writes as it is: each line a time stamp as
#: the log's format writes one, STAMP_END, "access " and printable ASCII (the parent's tag
#: goes in place of STAMP_END: no line holds another). It is checked on its
#: shapes (_SHAPES: digits as "0", the other printable characters, STAMP_END and
#: ACCESS_LINE_END as they are, any other byte as ACCESS_RECORD_START, which then
#: shows in its count) with a few passes over the whole batch, each in C, rather
#: than an expression matched character by character.
_STAMP_END = STAMP_END.encode()
_LINE_START = rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}" + _STAMP_END + rb"access "
_ACCESS_LINE = re.compile(_LINE_START + rb"[ -~]{0,%d}" % limits.MAX_WORKER_LOG_CHARS)
_SHAPES = bytes(ord("0") if chr(b) in "0123456789" else
                b if 0x20 <= b < 0x7F or b in _STAMP_END + ACCESS_LINE_END else
                ACCESS_RECORD_START[0]
                for b in range(256))
_LINE_SHAPE = b"0000-00-00 00:00:00,000" + _STAMP_END + b"access "
#: A batch's start and separators as the log's line ends.
_LINE_ENDS = bytes.maketrans(ACCESS_RECORD_START + ACCESS_LINE_END, b"\n\n")


def _as_written(record: bytes, count: int, tag: bytes) -> Optional[bytes]:
    """The ``count`` lines of the batch ``record`` as the log's lines, ``tag`` after
    each stamp; None when one of them is not an access line the parent may write as
    it is.

    Every line begins in shape (the first after the record's start, each other
    after ACCESS_LINE_END); each shape holds one STAMP_END, so no line holds
    another; and no byte but the record's start shapes as ACCESS_RECORD_START.
    """
    shapes = record.translate(_SHAPES)
    if (not shapes.startswith(ACCESS_RECORD_START + _LINE_SHAPE)
            or shapes.count(ACCESS_LINE_END + _LINE_SHAPE) != count - 1
            or shapes.count(_STAMP_END) != count
            or shapes.count(ACCESS_RECORD_START) != 1):
        return None
    lines = record.replace(_STAMP_END, tag).translate(_LINE_ENDS)
    return b"".join((memoryview(lines)[len(ACCESS_RECORD_START):], b"\n"))


def _lines_in(record: bytes) -> int:
    """The lines a record read from the pipe holds: a batch's, or one."""
    if record.startswith(ACCESS_RECORD_START):
        return record.count(ACCESS_LINE_END) + 1
    return 1


def _parse(line):
    """``(level, message)`` of one line from the worker; anything odd is a warning."""
    try:
        item = loads_shallow(line)
        level, message = item["level"], item["message"]
        if not isinstance(message, str):
            raise TypeError("message")
    except Exception:  # a hostile line may raise anything the parse and lookups can
        return ODD_LEVEL, "unreadable log line: " + line[:200].decode("ascii", "replace")
    if type(level) is not int or level not in KNOWN_LEVELS:
        level = ODD_LEVEL
    return level, message
