"""Where log records go: ``log_file``, else standard error in the foreground, else syslog."""

import logging
import logging.handlers
import os
import sys

_FORMAT = "%(asctime)s fingerd[%(process)d]: %(levelname)s %(message)s"
#: A log file fingerd creates, at startup or after a rotation: root and the file's group
#: (adm on Debian) read it, nobody else, as Debian's daemons do.
LOG_FILE_MODE = 0o640


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler that creates its file with LOG_FILE_MODE, not the umask's 0644."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                     LOG_FILE_MODE)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def configure(log_file, foreground):
    """Send the root logger's records to one destination and return its handler."""
    if log_file:
        handler = LogFileHandler(log_file)
        handler.setFormatter(logging.Formatter(_FORMAT))
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
    else:
        handler = logging.handlers.SysLogHandler(
            "/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("fingerd[%(process)d]: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def reopen(handler):
    """Reopen the log file now if logrotate moved it (SIGUSR1).

    WatchedFileHandler also notices on its next record; this makes it immediate.
    """
    if isinstance(handler, logging.handlers.WatchedFileHandler):
        handler.reopenIfNeeded()
