"""Reading and durably replacing the users file, and the rules root keeps when it does.

The root parent writes the users file on the worker's behalf, so whoever can
change the file or its directory could make root write where they choose.
As OpenSSH's StrictModes does, the parent refuses (``UnsafeUsersFile``, its
message saying what to fix):

- a symbolic link at the file's path, which no reader follows either (the
  worker's reads are ``O_NOFOLLOW`` too), or as the directory's last
  component;
- a file or a directory that someone else than root could write: owned by
  another user, or writable by its group or by others (a POSIX ACL granting
  write shows in the group bits, and is refused with them). When the daemon
  does not run as root, its own user counts as root does. The worker's
  account never does: the worker asks the parent to write, it only reads.

The parent checks at startup (``fingerd`` and ``fingerd -t``) and at each
write, which goes through a descriptor of the directory opened once: the
temporary file is created in it, renamed within it and the directory
fsynced, so a directory swapped meanwhile cannot redirect the write.
The directory's own ancestors are not checked.
"""

import ctypes
import errno
import os
import pwd
import re
import secrets
import stat
from collections.abc import Callable, Container
from typing import Optional, Union, overload

from fingerd.limits import MAX_USERS_FILE_BYTES

#: Mode of a users file the setter creates; the file is public by nature.
NEW_FILE_MODE = 0o644

#: Random bytes in the name of a temporary file, ``.NAME.HEX.tmp``.
TEMPORARY_TOKEN_BYTES = 6

#: One version of a file (``signature``): device, inode, size, mtime and ctime.
Signature = tuple[int, int, int, int, int]

#: renameat2's flags (Linux 3.15): fail if the target exists; swap the two names.
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
#: A renameat2 the kernel, file system or a seccomp filter refuses: a plain rename then.
_NO_RENAMEAT2 = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint)


class FileTooLarge(OSError):
    """A file larger than the daemon agrees to read."""


class NotRegularFile(OSError):
    """A FIFO, device or directory where a file should be: never read, it could block."""


class NotDurable(OSError):
    """The new file was renamed into place, but what makes the rename durable failed
    (the directory's fsync): readers see the new file, which a crash may undo."""


class Superseded(OSError):
    """Another process replaced the file, or wrote to it, after the writer's last look
    and before its rename: that version was put back in place, and nothing changed."""


class UnsafeUsersFile(OSError):
    """A symbolic link at the users file's path, or a file or directory others than
    root could change; ``strerror`` says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)


def signature(st: os.stat_result) -> Signature:
    """What identifies one version of a file: a rename or an in-place edit changes it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _split(path: str) -> tuple[str, str]:
    return os.path.split(os.path.abspath(path))


def _symlink_refused(path: str) -> UnsafeUsersFile:
    return UnsafeUsersFile(f"the path is a symbolic link, which fingerd does not follow; "
                           f"put the file itself at {path}")


@overload
def read_bounded(path: str, limit: int = ...) -> tuple[bytes, Optional[Signature]]: ...


@overload
def read_bounded(path: str, limit: int = ..., *, unless: Container[Signature],
                 ) -> tuple[Optional[bytes], Optional[Signature]]: ...


def read_bounded(path: str, limit: int = MAX_USERS_FILE_BYTES, unless: Container[Signature] = (),
                 ) -> tuple[Optional[bytes], Optional[Signature]]:
    """``(bytes, signature)`` of ``path``; the signature is None if it changed while read.

    Opened without blocking and read only when it is a regular file, so a FIFO or a
    device at the path cannot hang the reader; a symbolic link at the path is never
    followed. When the file's signature is one of ``unless`` it is not read at all:
    ``(None, signature)``. Raises FileNotFoundError, UnsafeUsersFile (a symbolic link),
    NotRegularFile, FileTooLarge or another OSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP and _is_symlink(path):
            raise _symlink_refused(path) from None
        raise
    try:  # closed here: open() keeps the descriptor of a directory it refuses
        with open(fd, "rb", closefd=False) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file")
            before = signature(st)
            if before in unless:
                return None, before
            # Its size first (a sparse file's zeros cost memory), then what is read (it grows).
            if st.st_size > limit or len(data := f.read(limit + 1)) > limit:
                raise FileTooLarge(f"{path}: larger than {limit} bytes")
            after = signature(os.fstat(f.fileno()))
    finally:
        os.close(fd)
    return data, (before if before == after else None)


def _is_symlink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def check_users_file(path: str) -> None:
    """Raise UnsafeUsersFile unless root may write the users file at ``path`` safely.

    A missing file is fine (the setter creates it), its directory is checked;
    a missing directory has nothing to check (a write then fails). Raises
    another OSError when the directory cannot be opened or the file looked at.
    """
    directory, name = _split(path)
    try:
        dir_fd = _open_directory(directory)
    except FileNotFoundError:
        return
    try:
        _check_in(dir_fd, directory, name, path)
    finally:
        os.close(dir_fd)


def _open_directory(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a symbolic link: ENOTDIR on Linux, ELOOP elsewhere.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(directory):
            raise UnsafeUsersFile(
                f"directory {directory} is a symbolic link, which fingerd does not "
                f"follow; name the real directory in users_file") from None
        raise


def _check_in(dir_fd: int, directory: str, name: str, path: str) -> Optional[os.stat_result]:
    """The users file's ``lstat`` (None when missing) once both it and its directory,
    open as ``dir_fd``, pass; else raise UnsafeUsersFile or NotRegularFile."""
    problem = unsafe_ownership(f"directory {directory}", directory, os.fstat(dir_fd))
    if problem:
        raise UnsafeUsersFile(problem)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _symlink_refused(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(errno.EINVAL, "not a regular file")
    problem = unsafe_ownership("the file", path, st)
    if problem:
        raise UnsafeUsersFile(problem)
    return st


def unsafe_ownership(what: str, path: str, st: os.stat_result) -> Optional[str]:
    """What makes ``st`` changeable by someone else than root (and this process's
    user), as a sentence that says how to fix it; None when nothing does."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        trusted = "root" if me == 0 else f"root or {_user(me)}"
        return (f"{what} is owned by {_user(st.st_uid)}, not by {trusted}; "
                f"run chown {_user(me) if me else 'root'} {path}")
    who = [name for bit, name in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others"))
           if st.st_mode & bit]
    if who:
        flags = "".join(name[0] for name in who)
        return f"{what} is writable by {' and '.join(who)}; run chmod {flags}-w {path}"
    return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def replace_durably(path: str, data: Union[bytes, Callable[[int], None]],
                    before_rename: Optional[Callable[[], None]] = None) -> Signature:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file whole.

    First the rules of this module are checked (UnsafeUsersFile). The new
    file is written beside the old one through a descriptor of the
    directory, takes the old one's owner, group, permission bits (setuid,
    setgid and sticky bits dropped) and extended attributes (an ACL among
    them: who may read it), is fsynced, renamed over it within that
    directory, and the directory is fsynced. Returns the new file's
    signature. On any error before the rename the old file is untouched and
    the temporary file removed; one after it is NotDurable. ``data`` is the
    new content, or a function that writes it to the descriptor it is given
    (to copy parts of another file in the kernel rather than through
    memory). ``before_rename()``, called once the new file is on disk, may
    still call the write off by raising: the rename is the moment the file
    changes. A version put at the path in the instant before it is kept, and
    Superseded raised (``_put_in_place``).
    """
    directory, name = _split(path)
    dir_fd = _open_directory(directory)
    source = -1
    try:
        old = _check_in(dir_fd, directory, name, path)
        if old is not None:
            source = _open_same(dir_fd, name, old)
        tmp = _create_temporary(dir_fd, name)
        fd = tmp[1]
        try:
            if old is None:
                os.fchmod(fd, NEW_FILE_MODE)
            else:
                # Always: in a setgid directory the new file takes the directory's group.
                os.fchown(fd, old.st_uid, old.st_gid)
                os.fchmod(fd, old.st_mode & 0o777)
            if callable(data):
                data(fd)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            if source >= 0:
                # After the writes, which would drop a security.capability attribute.
                _copy_attributes(source, fd)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            if before_rename is not None:
                before_rename()
            _put_in_place(dir_fd, tmp[0], name, old)
        except NotDurable:
            raise  # in place, and the version it displaced kept at the temporary name
        except BaseException:
            if fd >= 0:
                os.close(fd)
            os.unlink(tmp[0], dir_fd=dir_fd)
            raise
        try:
            os.fsync(dir_fd)
            return signature(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except OSError as exc:
            raise NotDurable(exc.errno, exc.strerror) from None
    finally:
        if source >= 0:
            os.close(source)
        os.close(dir_fd)


def _put_in_place(dir_fd: int, tmp: str, name: str, old: Optional[os.stat_result]) -> None:
    """Put ``tmp`` in the place of ``name``, the version ``old`` (None: no file); else
    raise Superseded, ``name`` as it is. The two names are exchanged atomically and
    the one displaced looked at (a rename changes only its ctime): another version,
    renamed there or written to since the last look, is exchanged back rather than
    lost. Where there was no file, none may have come (RENAME_NOREPLACE). Without
    renameat2, a plain rename."""
    try:
        swapped = _rename2(dir_fd, tmp, name,
                           RENAME_NOREPLACE if old is None else RENAME_EXCHANGE)
    except (FileExistsError, FileNotFoundError):
        raise Superseded(errno.EAGAIN, "the users file changed as it was written") from None
    if not swapped:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    if old is None:
        return
    try:  # the new file is in place: a failure now leaves the outcome unknown
        if signature(os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False))[:4] == signature(old)[:4]:
            os.unlink(tmp, dir_fd=dir_fd)
            return
        back = _rename2(dir_fd, tmp, name, RENAME_EXCHANGE)
    except OSError as exc:
        raise NotDurable(exc.errno, f"{tmp} left beside it: {exc.strerror}") from None
    if not back:
        raise NotDurable(errno.EIO, f"the version written meanwhile was not put back: it is {tmp}")
    raise Superseded(errno.EAGAIN, "the users file changed as it was written")


def _rename2(dir_fd: int, source: str, target: str, flags: int) -> bool:
    """renameat2 within ``dir_fd``; False where it cannot be had (_NO_RENAMEAT2)."""
    if _renameat2 is None:
        return False
    if _renameat2(dir_fd, os.fsencode(source), dir_fd, os.fsencode(target), flags) == 0:
        return True
    error = ctypes.get_errno()
    if error in _NO_RENAMEAT2:
        return False
    raise OSError(error, os.strerror(error), target)


def _open_same(dir_fd: int, name: str, old: os.stat_result) -> int:
    """A descriptor of ``name`` in ``dir_fd``, the file ``old`` describes (never blocking
    on a FIFO put there); OSError if another file has taken its place."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (old.st_dev, old.st_ino):
        os.close(fd)
        raise OSError(errno.EAGAIN, "the file was replaced as it was opened; try again")
    return fd


def _copy_attributes(source: int, target: int) -> None:
    """Give ``target`` every extended attribute ``source`` has (a POSIX ACL, an SELinux
    label, ``user.*``): a replaced file keeps who may read it.

    A file system without extended attributes has none to copy. One that
    refuses to set an attribute the old file has raises OSError naming it:
    a file that would lose an operator's ACL is not put in place.
    """
    try:
        names = os.listxattr(source)
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        return
    for attribute in names:
        try:
            os.setxattr(target, attribute, os.getxattr(source, attribute))
        except OSError as exc:
            raise OSError(exc.errno, f"extended attribute {attribute} not copied: "
                                     f"{exc.strerror}") from None


def _create_temporary(dir_fd: int, name: str) -> tuple[str, int]:
    """``(name, fd)`` of a new private file in the directory ``dir_fd``."""
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(TEMPORARY_TOKEN_BYTES)}.tmp"
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                                os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def remove_temporaries(path: str) -> list[str]:
    """Remove the temporary files that writes of ``path`` cut short left beside it
    (a writer killed between creating one and renaming it: a daemon stopped in
    the middle of a long write, a crash, a power cut); the paths removed.

    Only regular files of this process's user named as ``replace_durably``
    names them, and only while no write of ``path`` can be under way: at the
    start of the one daemon that writes it. A missing directory has none.
    """
    directory, name = _split(path)
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{{2 * TEMPORARY_TOKEN_BYTES}}}\.tmp")
    try:
        dir_fd = _open_directory(directory)
    except FileNotFoundError:
        return []
    removed = []
    try:
        for entry in os.scandir(dir_fd):
            if not pattern.fullmatch(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    os.unlink(entry.name, dir_fd=dir_fd)
                    removed.append(os.path.join(directory, entry.name))
            except FileNotFoundError:
                continue
    finally:
        os.close(dir_fd)
    return removed
