"""The pidfile, held with flock for the daemon's whole life.

A lock, unlike a pid alone, cannot be fooled by a recycled pid and is
released by the kernel when the holder dies, so a stale file is told from a
live daemon without guessing.
"""

import fcntl
import os

RUNNING = "running"
DEAD = "dead"
NOT_RUNNING = "not running"


class AlreadyRunning(RuntimeError):
    pass


class Pidfile:
    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        """Take the lock or raise AlreadyRunning; raise OSError if the file cannot be opened.

        The descriptor is inherited across fork, and the lock with it, so the
        process that detaches keeps holding it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(f"already running (pid {pid}, pidfile {self.path})") from None
        self.fd = fd

    def write(self, pid):
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode("ascii"), 0)

    def release(self):
        """Remove the file if it still names this process, then let go of the lock."""
        if self.fd is None:
            return
        try:
            if _read_pid(self.fd) == os.getpid():
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _read_pid(fd):
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except ValueError:
        return None


def probe(path):
    """``(state, pid)``: RUNNING while the lock is held, DEAD if the file outlived its
    holder, NOT_RUNNING without a file. Raises PermissionError if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return NOT_RUNNING, None
    try:
        pid = _read_pid(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return RUNNING, pid
        return DEAD, pid
    finally:
        os.close(fd)
