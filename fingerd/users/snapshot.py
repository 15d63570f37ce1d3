"""The last good user table, kept across worker restarts in an anonymous memory file.

The root parent creates the file once, before the first worker; every worker
inherits it. A worker writes there the users file it last loaded, and its
whole table when the file on disk goes bad, so that the next worker serves
what the previous one served even if the file is invalid, unreadable or gone
by then. The parent never reads it: it holds nothing the worker could not
already serve, and a worker's successor checks it as it checks the file.
"""

import os
from collections.abc import Mapping
from typing import Optional

from fingerd.limits import MAX_USERS_FILE_BYTES
from fingerd.users.table import UserTable
from fingerd.users.usersfile import UsersFileError, parse_users


def create() -> int:
    """A new, empty snapshot file's descriptor (in the parent)."""
    return os.memfd_create("fingerd-users", os.MFD_CLOEXEC)


class Snapshot:
    """Writes and reads the snapshot at ``fd``; every call replaces or reads it whole."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def save(self, data: bytes) -> None:
        """Replace the snapshot with ``data``, the bytes of a valid users file."""
        os.ftruncate(self.fd, 0)
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(self.fd, view[offset:], offset)

    def save_table(self, table: Mapping[str, str]) -> None:
        """Replace the snapshot with ``table`` written as a users file."""
        self.save("".join(f"{name}:{status}\n" for name, status in table.items())
                  .encode("utf-8"))

    def load(self) -> Optional[bytes]:
        """The saved bytes, or None when nothing was saved (or too much was)."""
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
        """The saved table, or None when nothing valid was saved."""
        data = self.load()
        if data is None:
            return None
        try:
            return parse_users(data, "the previous worker's table")
        except UsersFileError:
            return None
