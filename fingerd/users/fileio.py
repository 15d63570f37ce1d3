"""Reading and durably replacing the users file."""

import errno
import os
import stat
import tempfile

from fingerd.limits import MAX_USERS_FILE_BYTES

#: Mode of a users file the setter creates; the file is public by nature.
NEW_FILE_MODE = 0o644


class FileTooLarge(OSError):
    """A file larger than the daemon agrees to read."""


class NotRegularFile(OSError):
    """A FIFO, device or directory where a file should be: never read, it could block."""


def signature(st):
    """What identifies one version of a file: a rename or an in-place edit changes it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_bounded(path, limit=MAX_USERS_FILE_BYTES, unless=()):
    """``(bytes, signature)`` of ``path``; the signature is None if it changed while read.

    Opened without blocking and read only when it is a regular file, so a
    FIFO or a device at the path cannot hang the reader. When the file's
    signature is one of ``unless`` it is not read at all: ``(None, signature)``.
    Raises FileNotFoundError, NotRegularFile, FileTooLarge or another OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file")
        before = signature(st)
        if before in unless:
            return None, before
        data = f.read(limit + 1)
        if len(data) > limit:
            raise FileTooLarge(f"{path}: larger than {limit} bytes")
        after = signature(os.fstat(f.fileno()))
    return data, (before if before == after else None)


def replace_durably(path, data):
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file whole.

    The new file is written beside the old one, takes its mode and owner,
    is fsynced, renamed over it, and the directory is fsynced. Returns the
    new file's signature. On any error the old file is untouched and the
    temporary file removed. ``data`` is the new content, or a function that
    writes it to the descriptor it is given (to copy parts of another file
    in the kernel rather than through memory).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        if old is None:
            os.fchmod(fd, NEW_FILE_MODE)
        else:
            os.fchmod(fd, old.st_mode & 0o7777)
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, old.st_uid, old.st_gid)
        if callable(data):
            data(fd)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return signature(os.stat(path))
