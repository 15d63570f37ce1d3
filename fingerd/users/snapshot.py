"""The last good user table, kept across worker restarts in anonymous memory files.

The root parent makes one for each worker it forks. A worker writes only its own and,
at its start, reads its predecessor's: that of the last worker that became ready
(``process/parent/forking.py``). No two processes ever write the same file, so a
reload's worker, started beside the one serving, can neither tear that one's records
nor replace its table, whether it becomes ready or dies first. A worker writes there
the users file it last loaded (or the table it took from its predecessor), and each
status set since as one record of a few bytes after it, so that the next worker serves
what the previous one served even if the file is invalid, unreadable or gone by then
(a reload's worker included). Past MAX_SETS_BYTES of records the whole table is saved
instead. The parent never reads them. A successor checks what it reads as it checks
the file, and loads no table cut short (its writer killed while saving it) or saved
again while it was read (a reload's worker reads that of a worker still serving); a
last record cut short is left out.
"""

import os
import re
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
#: That whole line: also which save of the file this is, and the bytes of table after it,
#: so that a table cut short, or saved again while it was read, is told apart.
HEADER = re.compile(re.escape(READ_AT) + rb"(\S+); save (\d+): (\d+) bytes\n")
#: Bytes of records one worker appends before it saves the whole table instead.
MAX_SETS_BYTES = 1 << 20


def create() -> int:
    """A new, empty snapshot file's descriptor (in the parent)."""
    return os.memfd_create("fingerd-users", os.MFD_CLOEXEC)


class Snapshot:
    """Writes the snapshot at ``fd``, which no other process writes; reads the one at
    ``previous`` (by default ``fd`` too). Every call replaces or reads one whole."""

    def __init__(self, fd: int, previous: Optional[int] = None) -> None:
        self.fd = fd
        self.previous = fd if previous is None else previous
        #: Bytes of records appended since the table was last saved.
        self._appended = 0
        #: Tables saved so far: a reader tells by it that one was saved while it read.
        self._saves = 0
        #: When the users file of the table saved, or loaded, was read (time.time()); 0:
        #: not known.
        self.read_at = 0.0

    def save(self, data: bytes, read_at: Optional[float] = None) -> None:
        """Replace the snapshot with ``data``, the bytes of a valid users file, read at
        ``read_at`` (by default when the file of the table saved last was)."""
        if read_at is not None:
            self.read_at = read_at
        self._appended = 0
        self._saves += 1
        os.ftruncate(self.fd, 0)
        header = READ_AT + f"{self.read_at!r}; save {self._saves}: {len(data)} bytes\n".encode()
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
        """The bytes saved at ``previous``, records included, or None when nothing was
        saved (or too much was)."""
        size = os.fstat(self.previous).st_size
        if not 0 < size <= MAX_USERS_FILE_BYTES:
            return None
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(self.previous, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def load_table(self) -> Optional[UserTable]:
        """The table saved at ``previous`` with the sets recorded after it applied, or None
        when nothing valid and whole was saved."""
        data = self.load() or b""
        header = HEADER.match(data)
        if header is None:
            return None
        end = header.end() + int(header[3])
        table, records = data[header.end():end], data[end:].split(SET_MARK)
        if len(table) != int(header[3]) or records[0] or \
                os.pread(self.previous, header.end(), 0) != header[0]:
            return None  # cut short, or saved again while it was read
        if not records[-1].endswith(b"\n"):
            records.pop()  # the last one cut short: its set was not answered yet
        try:
            read_at = float(header[1])
            users = parse_users(table, "the previous worker's table")
            sets = [_entry(record) for record in records[1:]]
        except (UsersFileError, ValueError):
            return None
        self.read_at = read_at
        return UserTable(chain(users.items(), sets)) if sets else users


def _entry(record: bytes) -> tuple[str, str]:
    """The one entry a record sets; ValueError unless the record is one whole line."""
    entries = parse_users(record, "a status set")
    if len(entries) != 1 or record.count(b"\n") != 1:
        raise ValueError("not one status set")
    return next(iter(entries.items()))
