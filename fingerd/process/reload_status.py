"""The outcome of the last reload, in a file beside the pidfile for ``fingerd-ctl reload``.

The root parent writes ``PIDFILE.reload`` after each reload (HUP): one JSON
object with its pid, the number of the reload, whether it was applied and
the message it logged. ``fingerd-ctl reload`` reads it before sending the
signal and waits for a newer one. It is replaced whole, as the pidfile is,
and removed at stop.
"""

import errno
import json
import os
import stat

from fingerd.process.pidfile import replace_file

#: The status file is the pidfile's path with this after it.
SUFFIX = ".reload"
#: Most bytes read of it: a message is a line or a few.
MAX_BYTES = 16 * 1024


def path_for(pidfile_path):
    return pidfile_path + SUFFIX


class ReloadStatus:
    """The parent's side: ``record`` each outcome, ``remove`` at stop."""

    def __init__(self, pidfile_path):
        self.path = path_for(pidfile_path)
        self.count = 0

    def record(self, applied, message):
        """Write the outcome of one more reload; a failure to is left to the log."""
        self.count += 1
        data = json.dumps({"pid": os.getpid(), "reload": self.count, "applied": applied,
                           "message": message}).encode() + b"\n"
        replace_file(self.path, data[:MAX_BYTES])

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def read(pidfile_path):
    """The last outcome recorded beside ``pidfile_path`` as a dict, or None. A symbolic
    link, anything but a regular file and anything that is not such an object are None."""
    try:
        fd = os.open(path_for(pidfile_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        status = json.loads(os.read(fd, MAX_BYTES))
    except ValueError:
        return None
    finally:
        os.close(fd)
    if not (isinstance(status, dict) and type(status.get("pid")) is int
            and type(status.get("reload")) is int and isinstance(status.get("message"), str)):
        return None
    return status
