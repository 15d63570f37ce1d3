"""Where log records go: ``log_file``, else standard error in the foreground, else syslog.

In the foreground under systemd, standard error is the journal's stream: each
line then starts with its syslog priority (``<3>``), as sd-daemon(3) says, so
that journald files errors as errors, and a record of several lines is kept on
one (its newlines written as ``\\n``), so that it stays one entry.
"""

import io
import logging
import logging.handlers
import os
import socket
import sys
from typing import Optional, cast

LOG_FORMAT = "%(asctime)s fingerd[%(process)d]: %(levelname)s %(message)s"
#: In an access line the worker stamps, between the time stamp and the line: a
#: character no line holds, so the parent finds where to put its own tag without
#: looking into the line.
STAMP_END = "\t"
#: A log file fingerd creates, at startup or after a rotation: root and the file's group
#: (adm on Debian) read it, nobody else, as Debian's daemons do.
LOG_FILE_MODE = 0o640


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler that creates its file with LOG_FILE_MODE, not the umask's 0644.

    A file that cannot be written (its file system full) costs lines, never the
    daemon, nor a traceback a line: the first failure says so on standard error in
    one line, and once a record is written again, a line after it says in the file
    that lines may be missing.
    """

    def __init__(self, filename: str) -> None:
        super().__init__(filename)
        #: Why the last write failed, while writes fail; None while they succeed.
        self.failing: Optional[str] = None
        self._failed_now = False

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                     LOG_FILE_MODE)
        # Text mode (FileHandler's mode is "a"): the open file is a TextIOWrapper.
        return cast(io.TextIOWrapper, open(fd, self.mode, encoding=self.encoding,
                                           errors=self.errors))

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        try:
            # Reopening after a rotation flushes the old file first, unguarded.
            super().emit(record)
        except OSError:
            self.handleError(record)
        if self.failing is not None and not self._failed_now:
            why, self.failing = self.failing, None
            super().emit(logging.LogRecord(
                record.name, logging.WARNING, __file__, 0,
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
            print(f"fingerd: cannot write log file {self.baseFilename}: {self.failing}; "
                  f"lines may be lost until it can be written", file=sys.stderr, flush=True)


#: Syslog priorities of the logging levels, for journald's ``<N>`` prefixes.
_PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
               logging.DEBUG: 7}
SYSLOG_SOCKET = "/dev/log"


class JournalFormatter(logging.Formatter):
    """One line a record, led by its syslog priority; journald adds the time and pid."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 4)
        return f"<{priority}>" + super().format(record).replace("\n", "\\n")


def stderr_is_journal() -> bool:
    """Whether standard error is the journal's stream ($JOURNAL_STREAM names its device
    and inode), not merely inherited from a process that had one."""
    try:
        device, inode = (int(part) for part in os.environ["JOURNAL_STREAM"].split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (KeyError, ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def syslog_problem() -> Optional[str]:
    """Why records could not reach syslog now, or None: checked before detaching, while
    there is still a terminal to say so on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(SYSLOG_SOCKET)
        except OSError as exc:
            return f"{SYSLOG_SOCKET}: {exc.strerror}"
    return None


def configure(log_file: str, foreground: bool) -> logging.Handler:
    """Send the root logger's records to one destination and return its handler."""
    return _install(_destination(log_file, foreground))


def _destination(log_file: str, foreground: bool) -> logging.Handler:
    """The handler writing to ``log_file``, else standard error in the foreground, else
    syslog; raises OSError if the log file cannot be opened."""
    handler: logging.Handler
    if log_file:
        handler = LogFileHandler(log_file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s")
                             if stderr_is_journal() else logging.Formatter(LOG_FORMAT))
    else:
        handler = logging.handlers.SysLogHandler(
            SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("fingerd[%(process)d]: %(message)s"))
    return handler


def _install(handler: logging.Handler) -> logging.Handler:
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


class StartupHandler(logging.Handler):
    """Where records go until the daemon's own destination is set up, so that a start
    that fails is in the log where an operator looks after a boot: ``log_file``, else
    (or when it cannot be opened) syslog if the daemon was to detach.

    The destination is opened for each record and closed at once: no descriptor
    is carried across detaching, nor left to the daemon.
    """

    def __init__(self, log_file: str, detached: bool) -> None:
        super().__init__()
        self.log_file = log_file
        self.detached = detached

    def emit(self, record: logging.LogRecord) -> None:
        if self.log_file:
            try:
                handler = _destination(self.log_file, foreground=True)
            except OSError:
                pass
            else:
                _handle_once(handler, record)
                return
        if self.detached and syslog_problem() is None:
            _handle_once(_destination("", foreground=False), record)


def _handle_once(handler: logging.Handler, record: logging.LogRecord) -> None:
    try:
        handler.handle(record)
    finally:
        handler.close()


def configure_startup(log_file: str, detached: bool) -> logging.Handler:
    """Before the daemon's own destination: records to a StartupHandler, or nowhere
    when they would go to standard error, where the reason a start fails is printed
    anyway (and during a check, which starts nothing: pass neither)."""
    return _install(StartupHandler(log_file, detached) if log_file or detached
                    else logging.NullHandler())


def reopen(handler: logging.Handler) -> None:
    """Reopen the log file now if logrotate moved it (SIGUSR1).

    WatchedFileHandler also notices on its next record; this makes it immediate.
    """
    if isinstance(handler, logging.handlers.WatchedFileHandler):
        handler.acquire()
        try:
            handler.reopenIfNeeded()
        except OSError:
            handler.handleError(None)  # type: ignore[arg-type]
        finally:
            handler.release()
