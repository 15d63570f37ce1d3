"""The log's destinations, each written without making the root parent wait: the
log file (its failures said once), standard error and syslog (a reader that
stops taking lines costs lines, kept a while or dropped and counted, never the
parent's loop). ``logsetup`` chooses among them.
"""

import collections
import errno
import io
import logging
import logging.handlers
import os
import select
import socket
import stat
import sys
import time
from collections.abc import Callable
from typing import Optional, Union, cast

from fingerd import limits

LOG_FORMAT = "%(asctime)s fingerd[%(process)d]: %(levelname)s %(message)s"
#: In an access line the worker stamps, between the time stamp and the line: a
#: character no line holds, so the parent finds where to put its own tag without
#: looking into the line.
STAMP_END = "\t"
#: A log file fingerd creates, at startup or after a rotation: root and the file's group
#: (adm on Debian) read it, nobody else, as Debian's daemons do.
LOG_FILE_MODE = 0o640
#: Where the log goes without a log_file: standard error in the foreground, else syslog.
STDERR = 2
SYSLOG_SOCKET = "/dev/log"
#: Syslog's facility "daemon", and the priorities of the logging levels (syslog's, and
#: journald's ``<N>`` prefixes).
LOG_DAEMON = 3
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
              logging.DEBUG: 7}


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler that creates its file with LOG_FILE_MODE, whatever the umask
    (0644 from the shell's, 0600 from the shipped unit's UMask=0077); a file that is
    there already keeps its mode.

    A file that cannot be written (its file system full) costs lines, never the
    daemon, nor a traceback a line: the first failure is said in one line by
    ``tell`` (standard error, or syslog for a detached daemon, whose standard error
    is /dev/null), and once a record or a batch is written again, a line after it
    says in the file that lines may be missing.
    """

    def __init__(self, filename: str,
                 tell: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(filename)
        self.tell = tell or _say_on_stderr
        #: Why the last write failed, while writes fail; None while they succeed.
        self.failing: Optional[str] = None
        self._failed_now = False
        #: Whether a batch's write that failed left the file's last line cut.
        self._mid_line = False

    def _open(self) -> io.TextIOWrapper:
        # Never waited on (a FIFO no process reads, or whose reader stops, costs lines),
        # nor through a symbolic link another account could have put in the directory.
        flags = (os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
                 | not_followed(self.baseFilename))
        try:
            fd = os.open(self.baseFilename, flags | os.O_CREAT | os.O_EXCL, LOG_FILE_MODE)
        except FileExistsError:
            fd = os.open(self.baseFilename, flags)
        else:
            try:
                os.fchmod(fd, LOG_FILE_MODE)  # the umask took bits off
            except OSError:
                os.close(fd)
                raise
        # Text mode (FileHandler's mode is "a"): the open file is a TextIOWrapper.
        return cast(io.TextIOWrapper, open(fd, self.mode, encoding=self.encoding,
                                           errors=self.errors))

    def reopenIfNeeded(self) -> None:
        """Open the file again if it was moved or removed (logrotate, an operator
        freeing a full disk), closing the old one without a flush: on a full disk the
        line its buffer holds cannot be written, and a flush that fails would keep the
        old file, and its space, forever. That line's loss was told when it failed."""
        try:
            st: Optional[os.stat_result] = os.stat(self.baseFilename)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (self.dev, self.ino):
            return
        if self.stream is not None:
            cast(io.BufferedWriter, self.stream.buffer).raw.close()
            self.stream = None  # until it is open again: _open may fail
        self._mid_line = False
        self.stream = self._open()
        self._statstream()

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        try:
            if self._mid_line and self.stream is not None:
                self.stream.write("\n")  # ends the line a failed batch cut
                self._mid_line = False
            super().emit(record)
        except OSError:
            self.handleError(record)
        self._note_gap()

    def _note_gap(self) -> None:
        """After a write, a record's or a batch's: if writes failed before and this one
        did not, the failure ends, said in the file, so that the next is told again."""
        if self.failing is not None and not self._failed_now:
            why, self.failing = self.failing, None
            super().emit(logging.LogRecord(
                "fingerd", logging.WARNING, __file__, 0,
                "this log file could not be written for a while (%s): lines of that time "
                "may be missing", (why,), None))

    def handleError(self, record: Optional[logging.LogRecord]) -> None:
        """A write that failed (``record`` None: a batch written whole, logrelay)."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)  # type: ignore[arg-type]
            return
        self._failed_now = True
        if self.failing is None:
            self.failing = error.strerror or str(error)
            self.tell(f"cannot write log file {self.baseFilename}: {self.failing}; "
                      f"lines may be lost until it can be written")

    def write_lines(self, data: bytes) -> None:
        """``data``, whole lines in the log's format, written in one write under the
        handler's lock (a log file moved away is opened again first). A write that
        fails (a full file system) goes to ``handleError``, as a record's would; one
        that wrote part of a line has the next line written begin a line of its own."""
        self.acquire()
        try:
            self._failed_now = False
            try:
                self.reopenIfNeeded()
                if self.stream is None:  # not opened again after a failure
                    self.stream = self._open()
                self.stream.flush()
                self._write_straight(self.stream.fileno(), data)
            except OSError:
                self.handleError(None)
            self._note_gap()
        finally:
            self.release()

    def _write_straight(self, fd: int, data: bytes) -> None:
        """``data`` written to ``fd`` past the stream's buffer (flushed), a line begun
        first if the last write cut one; notes whether the last byte written ends one."""
        view = memoryview(b"\n" + data if self._mid_line else data)
        while view:
            written = os.write(fd, view)
            self._mid_line = view[written - 1] != ord("\n")
            view = view[written:]


def not_followed(path: str) -> int:
    """O_NOFOLLOW unless ``path`` is a symbolic link of root's (``/dev/stderr``); raises
    for one of another account's: root would write, even create, what it names."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return os.O_NOFOLLOW
    if not stat.S_ISLNK(st.st_mode):
        return os.O_NOFOLLOW
    if st.st_uid not in (0, os.geteuid()):
        raise OSError(errno.ELOOP, f"a symbolic link of uid {st.st_uid}'s, not followed", path)
    return 0


def say_at_once(line: str, fd: int = STDERR) -> None:
    """``line`` on standard error if it takes it at once, else nowhere: a standard error
    nobody reads must not stop the daemon."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        if poller.poll(0):
            os.write(fd, line.encode()[:select.PIPE_BUF])
    except OSError:
        pass


def _say_on_stderr(message: str) -> None:
    say_at_once(f"fingerd: {message}\n")


class StderrHandler(logging.Handler):
    """Standard error as the log, written without ever waiting for its reader.

    A pipe nobody reads (a hung supervisor, a stopped shell pipeline) must not
    stop the root parent's loop, nor may its file description be made
    non-blocking: the terminal or shell that started fingerd shares it. So a
    write is made only when poll says standard error takes one now, of at most
    PIPE_BUF bytes (which a pipe takes whole). What it does not take waits, in
    order, up to ``backlog`` bytes, and is written before anything else on later
    records and on each turn of the parent's loop (``flush``); lines beyond are
    dropped and counted, and once there is room again a line says how many. A
    line cut by a write that fails (the reader gone) is ended before the next.
    """

    def __init__(self, fd: int = STDERR, backlog: int = limits.STDERR_BACKLOG_BYTES) -> None:
        super().__init__()
        self.fd = fd
        self._backlog = backlog
        self._poller = select.poll()
        self._poller.register(fd, select.POLLOUT)
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            regular = False
        #: Most bytes a write: a regular file takes any number at once.
        self._most = sys.maxsize if regular else select.PIPE_BUF
        #: What waits: bytes not yet written, and for a line telling of lines dropped,
        #: their count (else 0), given back to ``dropped`` if it is lost too.
        self._waiting: collections.deque[tuple[memoryview, int]] = collections.deque()
        self._waiting_bytes = 0
        #: Whether the last byte written ended a line.
        self._mid_line = False
        #: Lines dropped and not yet told.
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        self.write_lines(line)

    def write_lines(self, data: bytes) -> None:
        """``data``, whole lines, after what waits; dropped and counted when the
        backlog has no room for it."""
        self.acquire()
        try:
            self.flush()
            if self._waiting and self._waiting_bytes + len(data) > self._backlog:
                self.dropped += data.count(b"\n")
                return
            self._queue(data)
            self.flush()
        finally:
            self.release()

    def _queue(self, data: bytes, told: int = 0) -> None:
        if self.dropped and not told:
            self._tell_dropped()
        if self._mid_line and not self._waiting:
            data = b"\n" + data  # a line a failed write cut
        self._waiting.append((memoryview(data), told))
        self._waiting_bytes += len(data)

    def _tell_dropped(self) -> None:
        record = logging.LogRecord("fingerd", logging.WARNING, __file__, 0,
                                   "%d log lines dropped: standard error did not take them "
                                   "in time", (self.dropped,), None)
        told, self.dropped = self.dropped, 0
        self._queue((self.format(record) + "\n").encode(), told)

    def flush(self) -> None:
        """Write what waits, as far as standard error takes it now."""
        self.acquire()
        try:
            while self._waiting and self._poller.poll(0):
                first, told = self._waiting[0]
                try:
                    written = os.write(self.fd, first[:self._most])
                except OSError:  # nobody will ever read it (EPIPE), a full disk
                    self._lose_waiting()
                    return
                self._mid_line = first[written - 1] != ord("\n")
                self._waiting_bytes -= written
                if written < len(first):
                    self._waiting[0] = (first[written:], told)
                    continue
                self._waiting.popleft()
                if not self._waiting and self.dropped:
                    self._tell_dropped()
        finally:
            self.release()

    def _lose_waiting(self) -> None:
        self.dropped += sum(told or bytes(data).count(b"\n") for data, told in self._waiting)
        self._waiting.clear()
        self._waiting_bytes = 0

    def close(self) -> None:
        """Write what waits, waiting at most STDERR_CLOSE_SECONDS: a stopping daemon's
        last lines, and how many were dropped."""
        deadline = time.monotonic() + limits.STDERR_CLOSE_SECONDS
        self.acquire()
        try:
            if self.dropped:
                self._tell_dropped()
            self.flush()
            while self._waiting and (left := deadline - time.monotonic()) > 0:
                self._poller.poll(left * 1000)
                self.flush()
        finally:
            self.release()
        super().close()


class SyslogHandler(logging.Handler):
    """Syslog (facility daemon), never waited for: a record that /dev/log does not take
    at once (syslog busy or stopped) is dropped and counted, and once records go
    through again a line says how many. A record is one datagram: never cut."""

    def __init__(self, address: str = SYSLOG_SOCKET) -> None:
        super().__init__()
        self.address = address
        self.dropped = 0
        self._socket: Optional[socket.socket] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            datagram = self._datagram(record)
        except Exception:
            self.handleError(record)
            return
        if self.dropped and self._send(self._datagram(logging.LogRecord(
                record.name, logging.WARNING, __file__, 0, "%d log lines dropped: syslog "
                "did not take them in time", (self.dropped,), None))):
            self.dropped = 0
        if not self._send(datagram):
            self.dropped += 1

    def _datagram(self, record: logging.LogRecord) -> bytes:
        priority = LOG_DAEMON << 3 | PRIORITIES.get(record.levelno, 4)
        return f"<{priority}>{self.format(record)}\0".encode("utf-8", "backslashreplace")

    def _send(self, datagram: bytes) -> bool:
        """Whether syslog took ``datagram`` at once; connected again once if it went
        away (syslog restarted, or not there when fingerd started)."""
        for _ in range(2):
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._socket.connect(self.address)
                self._socket.send(datagram, socket.MSG_DONTWAIT)
                return True
            except BlockingIOError:
                return False
            except OSError:
                self._disconnect()
        return False

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def close(self) -> None:
        self._disconnect()
        super().close()


#: The handlers that take a batch of lines in the log's format whole (``write_lines``).
LineWriter = Union[LogFileHandler, StderrHandler]


def drain(handler: logging.Handler) -> None:
    """Write what waits for standard error, if the log goes there: a turn of the
    parent's loop, so that lines kept while it took none do not wait for the next."""
    if isinstance(handler, StderrHandler):
        handler.flush()


def reopen(handler: logging.Handler) -> bool:
    """Reopen the log file now if logrotate moved it (SIGUSR1); False when ``handler``
    writes no file (standard error, syslog), so that nothing is said to be reopened.

    WatchedFileHandler also notices on its next record; this makes it immediate.
    """
    if not isinstance(handler, logging.handlers.WatchedFileHandler):
        return False
    handler.acquire()
    try:
        handler.reopenIfNeeded()
    except OSError:
        handler.handleError(None)  # type: ignore[arg-type]
    finally:
        handler.release()
    return True
