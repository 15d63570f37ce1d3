"""A disk going bad, made on purpose: a directory's fsync that fails with EIO, in this
process (``failing_directory_fsync``) or in a real daemon (``IN_A_DAEMON``, for
``daemon.run_first``); an fsync that never returns, in a real daemon
(``stalled_in_a_daemon``)."""

import errno
import os
import stat
import threading


def failing_directory_fsync(real):
    """``os.fsync`` as on a failing disk: a directory's (the one that makes a rename
    durable) fails with EIO; a file's is ``real``'s."""
    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd)
    return fsync


#: Code that gives a daemon's interpreter that fsync before fingerd is imported.
IN_A_DAEMON = ("import os\n"
               "from tests.support.disk_faults import failing_directory_fsync\n"
               "os.fsync = failing_directory_fsync(os.fsync)\n")


def stalled_fsync(real, of_directory):
    """``os.fsync`` as on a disk that stops answering: a directory's (the one right after
    a rename) or, ``of_directory`` false, a file's (a new file's, before its rename) never
    returns, so that the process stays there until killed; the other is ``real``'s."""
    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode) == of_directory:
            threading.Event().wait()
        return real(fd)
    return fsync


def stalled_in_a_daemon(of_directory):
    """Code that gives a daemon's interpreter ``stalled_fsync`` before fingerd is imported."""
    return ("import os\n"
            "from tests.support.disk_faults import stalled_fsync\n"
            f"os.fsync = stalled_fsync(os.fsync, {of_directory!r})\n")
