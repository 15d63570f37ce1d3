"""Setting one status in the users file on disk, durably.

Kept apart from the store so that the root parent, which writes the file on
the worker's behalf, needs only this and the file format, never the table.
"""

from fingerd.users import fileio
from fingerd.users.usersfile import UsersFileError, with_status


class StoreError(Exception):
    """A set request that could not be carried out; nothing was changed."""


def write_status(path, name, status):
    """Durably set ``name``'s status in the users file at ``path``.

    The file on disk is edited rather than rewritten from memory, so an
    operator's comments and an edit not yet reloaded are kept. Returns the
    file's signatures before and after the write (``None`` before when it
    did not exist). Raises StoreError, leaving the file as it was, when the
    file on disk is invalid or cannot be written.
    """
    try:
        data, old_sig = fileio.read_bounded(path)
    except FileNotFoundError:
        data, old_sig = b"", None
    except OSError as exc:
        raise StoreError(f"cannot read users file: {exc.strerror or exc}") from exc
    try:
        new_data = with_status(data, name, status, path)
    except UsersFileError as exc:
        raise StoreError("users file on disk has errors; fix it first") from exc
    try:
        return old_sig, fileio.replace_durably(path, new_data)
    except OSError as exc:
        raise StoreError(f"cannot write users file: {exc.strerror or exc}") from exc
