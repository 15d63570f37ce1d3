"""The outcome of the last reload, in a file beside the pidfile for ``fingerd-ctl reload``.

The root parent writes ``PIDFILE.reload`` after each reload (HUP): one JSON
object with its pid, the number of the reload, when the last HUP it answers
came (``asked``, CLOCK_MONOTONIC, which every process shares), whether it
was applied and the message it logged. ``fingerd-ctl reload`` notes the time
before it sends the signal and waits for an outcome asked at that time or
later: not an earlier reload's, still under way when its HUP came. It is
replaced whole, as the pidfile is, and removed at stop. Where another account
may write beside the pidfile, it may make this file too: one of another account's
than root's or the reader's is not read (the pidfile's rule, ``pidfile.vouches``),
and what the message says is shown with its control characters escaped.
"""

import json
import logging
import os

from fingerd.process.logformat import clean
from fingerd.process.pidfile import read_vouched, replace_file

log = logging.getLogger(__name__)

#: The status file is the pidfile's path with this after it.
SUFFIX = ".reload"
#: Most bytes read of it: a message is a line or a few.
MAX_BYTES = 16 * 1024
#: Most characters of a message written: the object, escapes included, stays whole
#: within MAX_BYTES (a JSON escape takes at most 6 bytes: \uXXXX).
MAX_MESSAGE_CHARS = (MAX_BYTES - 256) // 6


def path_for(pidfile_path):
    return pidfile_path + SUFFIX


class ReloadStatus:
    """The parent's side: ``record`` each outcome, ``remove`` at stop."""

    def __init__(self, pidfile_path):
        self.path = path_for(pidfile_path)
        self.count = 0

    def record(self, applied, message, asked):
        """Write the outcome of one more reload, answering the HUPs up to ``asked``; a
        failure to is left to the log. A message too long is cut, never the object."""
        self.count += 1
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS - 3] + "..."
        data = json.dumps({"pid": os.getpid(), "reload": self.count, "asked": asked,
                           "applied": applied, "message": message}).encode() + b"\n"
        replace_file(self.path, data)

    def remove(self):
        """Remove the file at stop; what is in the way (a directory, where another account
        may write beside the pidfile) is logged, and keeps nothing else of the stop."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove the reload's outcome: %s", self.path,
                        exc.strerror or exc)


def read(pidfile_path):
    """The last outcome recorded beside ``pidfile_path`` as a dict, or None. A symbolic
    link, anything but a regular file, a file of another account's than root's or this
    one's (``vouches``) and anything that is not such an object, nested too deep for
    json's decoder included, are None."""
    data = read_vouched(path_for(pidfile_path), MAX_BYTES)
    if data is None:
        return None
    try:
        status = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(status, dict) and type(status.get("pid")) is int
            and type(status.get("reload")) is int and type(status.get("applied")) is bool
            and isinstance(status.get("message"), str)
            and type(status.get("asked")) in (int, float)):
        return None
    return status


def shown(message: str) -> str:
    """``message`` for a terminal: each of its lines (a refusal names an error a line)
    with every control and invisible character escaped, so that nothing it holds (a
    path, a file's text) can drive the terminal."""
    return "\n".join(clean(line) for line in message.split("\n"))
