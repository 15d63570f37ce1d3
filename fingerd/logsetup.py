"""Where log records go: ``log_file``, else standard error in the foreground, else syslog."""

import logging
import logging.handlers
import sys

_FORMAT = "%(asctime)s fingerd[%(process)d]: %(levelname)s %(message)s"


def configure(log_file, foreground):
    """Send the root logger's records to one destination and return its handler."""
    if log_file:
        handler = logging.handlers.WatchedFileHandler(log_file)
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
