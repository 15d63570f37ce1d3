"""Where log records go: ``log_file``, else standard error in the foreground, else syslog.

In the foreground under systemd, standard error is the journal's stream: each
line then starts with its syslog priority (``<3>``), as sd-daemon(3) says, so
that journald files errors as errors, and a record of several lines is kept on
one (its newlines written as ``\\n``), so that it stays one entry. The
destinations themselves, and why none makes the daemon wait, are in
``loghandlers``.
"""

import logging
import os
import socket
import sys
from typing import Optional

from fingerd.loghandlers import (
    LOG_FORMAT,
    PRIORITIES,
    SYSLOG_SOCKET,
    LogFileHandler,
    StderrHandler,
    SyslogHandler,
)


class JournalFormatter(logging.Formatter):
    """One line a record, led by its syslog priority; journald adds the time and pid."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 4)
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
    return _install(destination(log_file, foreground))


def destination(log_file: str, foreground: bool) -> logging.Handler:
    """The handler writing to ``log_file``, else standard error in the foreground, else
    syslog; raises OSError if the log file cannot be opened."""
    handler: logging.Handler
    if log_file:
        handler = LogFileHandler(log_file, None if foreground else _to_syslog)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    elif foreground:
        handler = StderrHandler()
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s")
                             if stderr_is_journal() else logging.Formatter(LOG_FORMAT))
    else:
        handler = SyslogHandler(SYSLOG_SOCKET)
        handler.setFormatter(logging.Formatter("fingerd[%(process)d]: %(message)s"))
    return handler


def _to_syslog(message: str) -> None:
    """``message`` to syslog, never waited for: a detached daemon's word on its log file,
    which cannot go in that file, nor to a standard error that is /dev/null."""
    _handle_once(destination("", foreground=False), logging.LogRecord(
        "fingerd", logging.ERROR, __file__, 0, "%s", (message,), None))


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
                handler = destination(self.log_file, foreground=True)
            except OSError:
                pass
            else:
                _handle_once(handler, record)
                return
        if self.detached and syslog_problem() is None:
            _handle_once(destination("", foreground=False), record)


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
