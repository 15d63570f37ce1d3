"""The pidfile, and the lock held for the daemon's whole life.

A lock, unlike a pid alone, cannot be fooled by a recycled pid and is
released by the kernel when the holder dies, so a stale pidfile is told from
a live daemon without guessing.

The lock is not taken on the pidfile, which everyone may read: ``flock``
needs no more than a descriptor, and anyone who could open the pidfile
could hold a shared lock on it and keep the next daemon from starting.
It is taken on a file of its own beside it, ``PIDFILE.lock``: a regular
file of the daemon's user, mode 0600, that no other user can open.
Anything else found at that path (a symbolic link, a file of another
user's or one others may open, a hard link) is removed and replaced, never
followed or locked. Another account tells whether the lock is held from the
kernel's table of locks, which everyone may read, without opening the file.

The pidfile holds the pid for whoever wants it (``fingerd-ctl``, the init
script, monitoring). It is written to a new file beside it, renamed into
place, so whatever was at its path, a symbolic link included, is replaced
rather than followed or written through. The lock file holds the pid too,
written by the holder itself, so that root still finds the daemon once its
pidfile is removed: the kernel's table of locks names the process that took
the lock, which is the one that started the daemon and exited as it detached.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat

RUNNING = "running"
DEAD = "dead"
NOT_RUNNING = "not running"

#: The lock file is the pidfile's path with this after it.
LOCK_SUFFIX = ".lock"

#: Mode of the pidfile: the pid is public.
PIDFILE_MODE = 0o644

#: Times the lock file is opened again when what is at its path changes meanwhile.
OPEN_ATTEMPTS = 8


class AlreadyRunning(RuntimeError):
    pass


def lock_path(path: str) -> str:
    """The lock file of the pidfile at ``path``."""
    return path + LOCK_SUFFIX


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = lock_path(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning; raise OSError if it cannot be taken.

        ``fd`` is then the lock file's descriptor. It is inherited across
        fork, and the lock with it, so the process that detaches keeps
        holding it.
        """
        for _ in range(OPEN_ATTEMPTS):
            fd = _open_private(self.lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # The pidfile's pid or, the pidfile removed, the one the holder wrote in
                # the lock file too (``write``).
                try:
                    pid = read_pid(self.path) or _holder(fd)
                finally:
                    os.close(fd)
                # init/fingerd tells a start that another start overtook by these words.
                raise AlreadyRunning(f"already running (pid {pid}, pidfile {self.path})") \
                    from None
            # A daemon stopping meanwhile removes the file it held: the lock just taken
            # would then be on a file no longer at the path, and another start would
            # take another. Only a lock on the file at the path counts.
            if _same_file(fd, self.lock_path):
                self.fd = fd
                return
            os.close(fd)
        raise OSError(errno.EAGAIN, "the lock file keeps being replaced", self.lock_path)

    def write(self, pid: int) -> None:
        """Put a pidfile naming ``pid`` in place, replacing whatever is at the path, and
        name ``pid`` in the lock file: written over the old pid before the rest is cut
        off, its first line is always one of the two."""
        data = f"{pid}\n".encode("ascii")
        replace_file(self.path, data)
        if self.fd is not None:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))

    def release(self) -> None:
        """Remove the pidfile if it still names this process, and the lock file, then
        let go of the lock."""
        if self.fd is None:
            return
        try:
            if read_pid(self.path) == os.getpid():
                os.unlink(self.path)
        except OSError:
            pass
        try:
            if _same_file(self.fd, self.lock_path):
                os.unlink(self.lock_path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def remove_stale(path: str) -> bool:
    """Remove the pidfile at ``path`` that a daemon no longer running left behind, one of
    root's or this account's (``vouches``), so that the init script's status says
    stopped after a stop. Done holding the daemon's lock, so that a daemon starting
    meanwhile keeps its own. Whether one was removed; never raises OSError."""
    try:
        if not vouches(os.lstat(path)):
            return False
        held = Pidfile(path)
        held.acquire()
    except (OSError, AlreadyRunning):
        return False
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        held.release()


def replace_file(path: str, data: bytes, mode: int = PIDFILE_MODE) -> None:
    """Put a file holding ``data`` at ``path``: written beside it, renamed into place, so
    that whatever was there, a symbolic link included, is replaced, never written through."""
    directory, name = os.path.split(os.path.abspath(path))
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                     os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.close(fd)
            fd = -1
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _private(st: os.stat_result) -> bool:
    """Whether ``st`` is of a file only this user can open: the lock file's rule."""
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and st.st_mode & 0o077 == 0 and st.st_nlink == 1)


def _open_private(path: str) -> int:
    """A read-write descriptor of the private regular file at ``path``, created if
    missing; whatever else is there (see ``_private``) is removed first, never
    followed or opened for good."""
    for _ in range(OPEN_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # ELOOP: a symbolic link. EACCES: another user's file (in a sticky directory
            # the kernel refuses even root: fs.protected_regular).
            if exc.errno not in (errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO):
                raise
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if _private(st):
                raise
            _remove(path, st)
            continue
        st = os.fstat(fd)
        if _private(st):
            return fd
        os.close(fd)
        _remove(path, st)
    raise OSError(errno.EAGAIN, "the lock file keeps being replaced", path)


def _remove(path: str, st: os.stat_result) -> None:
    """Unlink ``path`` if it is still the file ``st`` describes."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
        os.unlink(path)


def _same_file(fd: int, path: str) -> bool:
    st = os.fstat(fd)
    try:
        at_path = os.lstat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (at_path.st_dev, at_path.st_ino)


def read_pid(path: str) -> int | None:
    """The pid in the pidfile at ``path``; None if there is none or it holds no pid.

    Raises PermissionError if it cannot be read.
    """
    data = read_vouched(path, 32)
    return None if data is None else pid_in(data)


def read_vouched(path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the regular file at ``path``; None if there is none.

    A symbolic link at the path is not followed, and a file of another account's than
    root's or this one's is taken for none (``vouches``): where others may write
    beside the pidfile, they may make these files too. Raises OSError (as
    PermissionError) if it cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and vouches(st)):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    """The pid the lock file open at ``fd`` names on its first line (``Pidfile.write``)."""
    return pid_in(os.pread(fd, 32, 0).split(b"\n", 1)[0])


#: The largest pid Linux gives (PID_MAX_LIMIT on 64-bit machines).
PID_MAX_LIMIT = 1 << 22


def pid_in(line: bytes) -> int | None:
    """The pid a pidfile's or lock file's ``line`` names: decimal digits alone (blanks
    around them aside), 1 to PID_MAX_LIMIT; else None, so that no signal ever goes to a
    process group (0, -1) or raises for a number no process can have."""
    digits = line.strip()
    if not digits.isdigit() or len(digits) > len(str(PID_MAX_LIMIT)):
        return None
    pid = int(digits)
    return pid if 0 < pid <= PID_MAX_LIMIT else None


def probe(path: str) -> tuple[str, int | None]:
    """``(state, pid)``: RUNNING while the lock is held, DEAD if the pidfile outlived
    its holder, NOT_RUNNING without one. The pid is the pidfile's; while the lock is
    held and the pidfile names none (it was removed), the lock file's, which only its
    owner can read: None when that cannot be told either.

    Any account may ask. The lock file is the daemon's user's alone, so another
    account reads the kernel's table of locks instead of taking one (see
    ``held_in_lock_table``). Raises PermissionError only if neither can be read.
    """
    held = False
    holder = None
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    except PermissionError as denied:
        try:
            held = (vouches(os.lstat(lock_path(path)))
                    and held_in_lock_table(lock_path(path)))
        except OSError:
            raise denied from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # a symbolic link is no lock of the daemon's
            raise
    else:
        try:
            if vouches(os.fstat(fd)):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
            holder = _holder(fd)
        finally:
            os.close(fd)
    pid = read_pid(path)
    if held:
        return RUNNING, holder if pid is None else pid
    if pid is not None or os.path.lexists(path):
        return DEAD, pid
    return NOT_RUNNING, None


def vouches(st: os.stat_result) -> bool:
    """Whether the file ``st`` describes may vouch for the daemon: one of root's or of
    this account's. The daemon's lock file and pidfile are its user's, root's for the
    system's daemon; where another account could make them (a pidfile in a directory
    others may write), theirs may name any pid, and root's ``fingerd-ctl stop`` would
    signal it."""
    return st.st_uid in (0, os.geteuid())


#: The kernel's table of file locks, readable by every account (proc(5)).
LOCK_TABLE = "/proc/locks"


def held_in_lock_table(path: str, table: str = LOCK_TABLE) -> bool:
    """Whether an exclusive flock, the daemon's, is held on the regular file at ``path``,
    told by ``table``, whose lines name each lock's file as ``MAJOR:MINOR:INODE`` (major
    and minor in hex). Raises OSError if the table cannot be read.

    The lock file is not opened, so it keeps its mode 0600: no reader can hold a
    lock on it that would keep the next daemon from starting.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open(table, "rb") as f:
        lines = f.read().decode("ascii", "replace").splitlines()
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a waiter's line has "->" after
    # the number and holds nothing, a shared lock says READ.
    return any(fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5:6] == [wanted]
               for fields in (line.split() for line in lines))
