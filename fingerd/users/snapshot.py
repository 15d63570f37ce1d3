"""The last good user table, kept across worker restarts in an anonymous memory file.

The root parent creates the file once, before the first worker; every worker
inherits it. A worker writes there the users file it last loaded, and each
status set since as one record of a few bytes after it, so that the next
worker serves what the previous one served even if the file is invalid,
unreadable or gone by then (a reload's worker included). Past
MAX_SETS_BYTES of records the whole table is saved instead. The parent never
reads it: it holds nothing the worker could not already serve, and a
worker's successor checks it as it checks the file.
"""

import os
from collections.abc import Mapping
from itertools import chain
from typing import Optional

from fingerd.limits import MAX_USERS_FILE_BYTES
from fingerd.users.table import UserTable
from fingerd.users.usersfile import UsersFileError, parse_users

#: Begins each record of a status set after the table: a byte no users file holds.
SET_MARK = b"\0"
#: Begins the table's first line, a comment (so the table stays a users file): when its
#: users file was last read whole, which the next worker's
#: fingerd_last_reload_success_timestamp_seconds goes on saying while it serves the table.
READ_AT = b"# read at "
#: Bytes of records one worker appends before it saves the whole table instead.
MAX_SETS_BYTES = 1 << 20


def create() -> int:
    """A new, empty snapshot file's descriptor (in the parent)."""
    return os.memfd_create("fingerd-users", os.MFD_CLOEXEC)


class Snapshot:
    """Writes and reads the snapshot at ``fd``; every call replaces or reads it whole."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        #: Bytes of records this process appended since it last saved a table.
        self._appended = 0
        #: When the users file of the table saved, or loaded, was read (time.time()); 0:
        #: not known.
        self.read_at = 0.0

    def save(self, data: bytes, read_at: Optional[float] = None) -> None:
        """Replace the snapshot with ``data``, the bytes of a valid users file, read at
        ``read_at`` (by default when the file of the table saved last was)."""
        if read_at is not None:
            self.read_at = read_at
        self._appended = 0
        os.ftruncate(self.fd, 0)
        header = READ_AT + repr(self.read_at).encode() + b"\n"
        os.pwrite(self.fd, header, 0)
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(self.fd, view[offset:], len(header) + offset)

    def save_table(self, table: Mapping[str, str]) -> None:
        """Replace the snapshot with ``table`` written as a users file."""
        self.save("".join(f"{name}:{status}\n" for name, status in table.items())
                  .encode("utf-8"))

    def add_set(self, name: str, status: str) -> bool:
        """Record that ``name``'s status (both valid) was set after the table saved;
        False, recording nothing, once the records should give way to the table
        saved whole (``save_table``)."""
        record = SET_MARK + f"{name}:{status}\n".encode()
        if self._appended + len(record) > MAX_SETS_BYTES:
            return False
        os.pwrite(self.fd, record, os.fstat(self.fd).st_size)
        self._appended += len(record)
        return True

    def load(self) -> Optional[bytes]:
        """The saved bytes, records included, or None when nothing was saved (or too
        much was)."""
        size = os.fstat(self.fd).st_size
        if not 0 < size <= MAX_USERS_FILE_BYTES:
            return None
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(self.fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def load_table(self) -> Optional[UserTable]:
        """The saved table with the sets recorded after it applied, or None when nothing
        valid was saved."""
        data = self.load()
        if data is None:
            return None
        table, *records = data.split(SET_MARK)
        if table.startswith(READ_AT):
            first, _, _ = table.partition(b"\n")
            try:
                self.read_at = float(first[len(READ_AT):])
            except ValueError:
                self.read_at = 0.0
        try:
            users = parse_users(table, "the previous worker's table")
            sets = [next(iter(parse_users(record, "a status set").items()))
                    for record in records]
        except (UsersFileError, StopIteration):
            return None
        return UserTable(chain(users.items(), sets)) if sets else users
