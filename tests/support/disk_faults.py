"""A disk going bad, made on purpose: a directory's fsync that fails with EIO, in this
process (``failing_directory_fsync``) or in a real daemon (``IN_A_DAEMON``, for
``daemon.run_first``)."""

import errno
import os
import stat


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
