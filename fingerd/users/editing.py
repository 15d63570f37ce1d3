"""Setting one status in the users file on disk, durably.

Kept apart from the store so that the root parent, which writes the file on
the worker's behalf, needs only this and the file format, never the table.

A set on a file of a million lines costs, besides the fsyncs, a copy of it.
The version of the file this process wrote itself is neither validated nor
read whole again: the entry is found by reading where searched, and the
unchanged parts are copied from the old file to the new one a bounded piece
per system call. Writing the new file in one call held the CPU it ran on for
tens of milliseconds at a time (the kernel does not preempt it), stalling
the worker's answers when both shared a core. Copying in the kernel
(copy_file_range) made sets slower, not faster, here (docs/bench/ablation.md).
"""

import functools
import os
import types
from collections.abc import Callable
from typing import Optional

from fingerd.limits import MAX_USERS_FILE_BYTES
from fingerd.users import fileio
from fingerd.users.fileio import Signature
from fingerd.users.usersfile import FileBytes, UsersFileError, check_users, splice_plan

#: Most bytes one system call reads or writes.
COPY_CHUNK = 256 * 1024


#: The log line of a status written, with the client as the setter names it (address,
#: uid and login) and the user whose status it is; written by the process that made the
#: write: the root parent for the users file; for Redis the worker, with CHANGE.
SET_DONE = "setter: %s set the status of %s"
#: The ``extra`` of a worker's log record of a change: the parent rations such records
#: apart from the worker's others (logrelay.py), so that no flood of them drops it.
CHANGE = types.MappingProxyType({"change": True})
#: The log line of a write whose outcome is unknown (its file in place, not known durable;
#: or its writer ended as it renamed it): the file may hold the status, and is read again.
SET_MAYBE = "setter: %s may have set the status of %s: %s"

#: A file's signatures before a write (None: there was no file) and after it.
Written = tuple[Optional[Signature], Signature]


class StoreError(Exception):
    """A set request that could not be carried out; nothing was changed."""


class OutcomeUnknown(Exception):
    """A set request that may have been carried out, or not: handed on and its answer
    never came back (the process that took it is gone, or did not answer in time), or
    written and not known to be on disk (fileio.NotDurable). Its client is told
    nothing, since ERROR would say that nothing changed."""


class _Changed(Exception):
    """The file changed while it was being copied: the copy is thrown away."""


def write_status(path: str, name: str, status: str, trusted: Optional[Signature] = None,
                 before_rename: Optional[Callable[[], None]] = None) -> Written:
    """Durably set ``name``'s status in the users file at ``path``.

    The file on disk is edited rather than rewritten from memory, so an
    operator's comments and an edit not yet reloaded are kept. Returns the
    file's signatures before and after the write (``None`` before when it
    did not exist). Raises StoreError, leaving the file as it was, when the
    file on disk is invalid or cannot be written, or would grow past what a
    reload or a start reads (MAX_USERS_FILE_BYTES); OutcomeUnknown when the
    new file is in place but what makes it durable failed.

    ``name`` and ``status`` must be valid (the setter's rules). The whole
    file is read and validated before it is edited, unless its signature
    is ``trusted``: the signature of a version the caller validated or
    wrote itself (the new signature this returns is one). A file that
    anyone else has changed since has another signature, so it is read and
    validated again; so is a file changed while it was read, copied or
    synced, up to the last look at it before the rename, or in the instant
    between that look and the rename (replace_durably puts it back). A file
    that changes again meanwhile fails the set. ``before_rename`` is
    replace_durably's, called after that last look: it may call the write
    off. It is called again for a copy made anew after that instant.
    """
    try:
        return _write_status(path, name, status, trusted, before_rename)
    except _Changed:
        pass
    try:
        return _write_status(path, name, status, None, before_rename)
    except _Changed:
        raise StoreError("users file changed while it was written; try again") from None


def _write_status(path: str, name: str, status: str, trusted: Optional[Signature],
                  before_rename: Optional[Callable[[], None]]) -> Written:
    try:
        data, old_sig = fileio.read_bounded(path, unless=(trusted,) if trusted else ())
    except FileNotFoundError:
        data, old_sig = b"", None
    except OSError as exc:
        raise StoreError(f"cannot read users file: {exc.strerror or exc}") from exc
    else:
        if old_sig is None:
            raise _Changed  # while it was read: what was read may be half of an edit
    source = None
    try:
        if data is None:
            assert old_sig is not None
            source = _open_version(path, old_sig)
            view: FileBytes = _FileView(source, old_sig[2])
        else:
            try:
                check_users(data, path)
            except UsersFileError as exc:
                raise StoreError("users file on disk has errors; fix it first") from exc
            view = data
        plan = splice_plan(view, name, status)
        start, end, middle = plan
        if start + len(middle) + len(view) - end > MAX_USERS_FILE_BYTES:
            raise StoreError(f"users file would grow past {MAX_USERS_FILE_BYTES} bytes, "
                             f"the most fingerd reads; remove entries first")
        try:
            return old_sig, fileio.replace_durably(
                path, functools.partial(_write_spliced, view, plan),
                functools.partial(_unless_changed, path, old_sig, before_rename))
        except fileio.NotDurable as exc:
            raise OutcomeUnknown(f"users file replaced, but not known to survive a crash: "
                                 f"{exc.strerror}") from exc
        except fileio.Superseded:
            raise _Changed from None
        except OSError as exc:
            raise StoreError(f"cannot write users file: {exc.strerror or exc}") from exc
    finally:
        if source is not None:
            os.close(source)


def _open_version(path: str, sig: Signature) -> int:
    """A descriptor of the file at ``path``, still the version ``sig``; else _Changed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise _Changed from None
    if fileio.signature(os.fstat(fd)) != sig:
        os.close(fd)
        raise _Changed
    return fd


def _unless_changed(path: str, sig: Optional[Signature],
                    before_rename: Optional[Callable[[], None]]) -> None:
    """Raise _Changed unless the file at ``path`` is still the version ``sig`` (None: there
    is none): the last look before the rename, so that an edit made while the new file
    was written and synced is read, not renamed over. Then call ``before_rename``, so that
    it runs once, for the copy that is renamed, as the last step before the rename."""
    try:
        now: Optional[Signature] = fileio.signature(os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        now = None
    if now != sig:
        raise _Changed
    if before_rename is not None:
        before_rename()


def _write_spliced(data: FileBytes, plan: tuple[int, int, bytes], out: int) -> None:
    """Write the file ``plan`` makes of ``data`` to ``out``, a bounded piece a call."""
    start, end, middle = plan
    _copy(data, out, 0, start)
    _write_all(out, middle)
    _copy(data, out, end, len(data) - end)


def _copy(data: FileBytes, out: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``data`` at ``offset`` to ``out``, a bounded piece a call;
    raises _Changed when ``data`` (a file read where searched) ends early."""
    while count:
        piece = data[offset:offset + min(count, COPY_CHUNK)]
        if not piece:
            raise _Changed
        done = os.write(out, piece)
        offset += done
        count -= done


def _write_all(out: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view[:COPY_CHUNK]):]


class _FileView:
    """The first ``size`` bytes of the open file ``fd``, read only where searched or
    sliced: as much of ``bytes`` as splice_plan and _copy use."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: slice) -> bytes:
        start, stop, _ = index.indices(self._size)
        return _pread_all(self._fd, max(0, stop - start), start)

    def find(self, sub: bytes, start: int = 0) -> int:
        """Where ``sub`` first is at or after ``start``, -1 if nowhere; a bounded piece
        read at a time, pieces overlapping by len(sub) - 1 bytes."""
        while start < self._size:
            piece = _pread_all(self._fd, min(COPY_CHUNK + len(sub) - 1, self._size - start),
                               start)
            found = piece.find(sub)
            if found >= 0:
                return start + found
            if len(piece) < len(sub):
                return -1
            start += len(piece) - len(sub) + 1
        return -1


def _pread_all(fd: int, count: int, offset: int) -> bytes:
    """``count`` bytes at ``offset``, fewer only at the end of the file."""
    pieces: list[bytes] = []
    while count:
        piece = os.pread(fd, count, offset)
        if not piece:
            break
        pieces.append(piece)
        count -= len(piece)
        offset += len(piece)
    return b"".join(pieces)


class StatusWriter:
    """``write_status`` that remembers the version of the file it last wrote.

    So consecutive sets validate the file once, not at every write; an
    operator's edit in between is validated at the next set. Fits
    UserStore's ``writer``.
    """

    def __init__(self) -> None:
        #: Signature of the file as this writer last wrote it; None: validate.
        self.trusted: Optional[Signature] = None

    def __call__(self, path: str, name: str, status: str,
                 before_rename: Optional[Callable[[], None]] = None) -> Written:
        try:
            old, new = write_status(path, name, status, self.trusted, before_rename)
        except (StoreError, OutcomeUnknown):
            self.trusted = None
            raise
        self.trusted = new
        return old, new
