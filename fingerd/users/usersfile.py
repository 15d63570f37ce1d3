"""The users file format (README, "The users file"): pure logic, no I/O.

One ``user:status`` entry a line, split at the first colon; ``#`` comments
and blank lines are ignored. Lines are split on LF only (a CR before it is
dropped), never with ``str.splitlines``, which would also split on
``\\x1c``, ``\\x85`` or U+2028 and let one status read back as two entries.
A file with any invalid line is rejected whole.
"""

import re
from collections.abc import Iterator
from itertools import repeat
from operator import itemgetter
from typing import Optional, Protocol

from fingerd.limits import (
    MAX_NAME_CHARS,
    MAX_STATUS_BYTES,
    MAX_STORE_ENTRIES,
    MAX_USERS_FILE_BYTES,
)
from fingerd.users.table import UserTable

NAME_RE = re.compile(rf"[A-Za-z0-9._][A-Za-z0-9._-]{{0,{MAX_NAME_CHARS - 1}}}")

# Unicode category Cc (C0, DEL, C1) except TAB: never stored, never sent.
_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")

# For the fast path over a whole file (CRLF already made LF): entry lines,
# characters a name may not hold, and any control character but TAB and LF.
# Lines indented or blank but for spaces are left to the line-by-line reading.
_ENTRY_RE = re.compile(r"^([^#\s:][^:\n]*):(.*)$", re.M)
_NAME_BAD_RE = re.compile(r"[^A-Za-z0-9._\n-]")
_FILE_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Every byte but C0 controls (except TAB and LF) and DEL: deleting these from
#: a chunk leaves its control bytes, a pass several times faster than a search.
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if b in b"\t\n" or 0x20 <= b != 0x7F)
#: Lead byte of the UTF-8 encodings of U+0080 to U+00BF, C1 controls among them.
_C1_LEAD = b"\xc2"

#: How many errors one rejected file reports at most.
MAX_REPORTED_ERRORS = 20


class UsersFileError(ValueError):
    """A users file was rejected; ``errors`` holds ``(line, message)`` pairs."""

    def __init__(self, filename: str, errors: list[tuple[int, str]]) -> None:
        self.filename = filename
        self.errors = errors
        super().__init__("\n".join(f"{filename}:{line}: {msg}" for line, msg in errors))


def is_valid_name(name: str) -> bool:
    """True for 1 to 32 characters of ``A-Z a-z 0-9 . _ -``, not starting with ``-``."""
    return NAME_RE.fullmatch(name) is not None


def status_problem(status: str) -> Optional[str]:
    """Why ``status`` may not be stored, or None when it may."""
    if _CONTROL_RE.search(status):
        return "status contains a control character"
    if len(status) * 4 > MAX_STATUS_BYTES and len(status.encode("utf-8")) > MAX_STATUS_BYTES:
        return f"status longer than {MAX_STATUS_BYTES} bytes"
    return None


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsersFileError(filename, [(line, "not valid UTF-8")]) from None


def _entries(text: str) -> Iterator[tuple[int, str, str, Optional[str]]]:
    """Yield ``(index, name, status, error)`` for every entry line of ``text``; name and
    status are empty when the line is no entry at all."""
    for index, line in enumerate(text.split("\n")):
        if line.endswith("\r"):
            line = line[:-1]
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, status = line.partition(":")
        if not colon:
            yield index, "", "", "expected user:status"
        elif not is_valid_name(name):
            yield index, "", "", f"invalid user name {name[:40]!r}"
        else:
            yield index, name, status, status_problem(status)


def parse_users(data: bytes, filename: str = "users") -> UserTable:
    """Parse the bytes of a users file into a UserTable of name to status.

    Raises UsersFileError naming every bad line (up to MAX_REPORTED_ERRORS),
    never any other exception, whatever ``data`` holds. A valid file is read
    by a few whole-text regular expressions (a million lines in well under a
    second); any doubt falls back to the line-by-line reading that names
    the bad lines.
    """
    users = _parse_fast(data)
    return users if users is not None else _parse_lines(_decode(data, filename), filename)


def parse_importable(data: bytes, filename: str) -> UserTable:
    """``parse_users`` for a file to put in the Redis hash, refusing what every fingerd
    would refuse to read back from it: more than MAX_USERS_FILE_BYTES or
    MAX_STORE_ENTRIES entries."""
    if len(data) > MAX_USERS_FILE_BYTES:
        raise UsersFileError(filename, [(0, f"larger than {MAX_USERS_FILE_BYTES} bytes")])
    users = parse_users(data, filename)
    if len(users) > MAX_STORE_ENTRIES:
        raise UsersFileError(filename, [(0, f"{len(users)} entries, more than the "
                                            f"{MAX_STORE_ENTRIES} fingerd reads from Redis")])
    return users


#: Bytes of the file one pass of the fast path reads. Regular expressions
#: hold the GIL while they run; between chunks the serving threads get it
#: back, so a reload of a huge file never stalls queries for long.
CHUNK_BYTES = 64 * 1024


def _chunks(data: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + CHUNK_BYTES)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


class _Doubt(Exception):
    """The fast path saw something it leaves to the line-by-line reading."""


def _chunk_entries(data: bytes) -> Iterator[list[tuple[str, str]]]:
    """The ``(name, status)`` entries of each chunk of whole lines of ``data``, a list a
    chunk, each found in a few passes of C code; raises _Doubt when anything looks
    wrong, for the line-by-line reading to name it. Duplicates are the caller's to find.

    Splitting the bytes at LF is safe before decoding: no UTF-8 sequence holds
    that byte.
    """
    for chunk in _chunks(data):
        chunk = chunk.replace(b"\r\n", b"\n")
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise _Doubt from None
        if chunk.translate(None, _NOT_CONTROL_BYTES) or (
                _C1_LEAD in chunk and _FILE_CONTROL_RE.search(text)):
            raise _Doubt
        found = _entries_fast(text)
        if found is None:
            raise _Doubt
        yield found


def _parse_fast(data: bytes) -> Optional[UserTable]:
    """The table of a valid file; None when the line-by-line reading must decide."""
    counts = []

    def entries() -> Iterator[tuple[str, str]]:
        for found in _chunk_entries(data):
            counts.append(len(found))
            yield from found

    try:
        users = UserTable(entries())
    except _Doubt:
        return None
    return users if len(users) == sum(counts) else None


def _valid_fast(data: bytes) -> bool:
    """True for a valid file, as ``_parse_fast`` finds it, without building a table;
    False when the line-by-line reading must decide."""
    names: set[str] = set()
    count = 0
    try:
        for found in _chunk_entries(data):
            names.update(map(itemgetter(0), found))
            count += len(found)
    except _Doubt:
        return False
    return len(names) == count


def check_users(data: bytes, filename: str = "users") -> None:
    """Raise what ``parse_users`` raises for ``data``, if anything, without building
    the table: the check a write makes before it edits the file, several times
    cheaper on a large one."""
    if not _valid_fast(data):
        _parse_lines(_decode(data, filename), filename)


def _entries_fast(text: str) -> Optional[list[tuple[str, str]]]:
    entries: list[tuple[str, str]] = _ENTRY_RE.findall(text)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(entries) != len(lines) - lines.count("") - sum(map(str.startswith, lines,
                                                                 repeat("#"))):
        return None
    if not entries:
        return entries
    names, statuses = zip(*entries)
    joined = "\n".join(names)
    if _NAME_BAD_RE.search(joined) or joined.startswith("-") or "\n-" in joined or \
            max(map(len, names)) > MAX_NAME_CHARS:
        return None
    if max(map(len, statuses)) * 4 > MAX_STATUS_BYTES and any(map(status_problem, statuses)):
        return None
    return entries


def _parse_lines(text: str, filename: str) -> UserTable:
    users: dict[str, str] = {}
    first_line: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    for index, name, status, error in _entries(text):
        if error is None and name in users:
            error = f"duplicate user {name} (first on line {first_line[name]})"
        if error is not None:
            errors.append((index + 1, error))
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        users[name] = status
        first_line[name] = index + 1
    if errors:
        raise UsersFileError(filename, errors)
    return UserTable(users.items())


def with_status(data: bytes, name: str, status: str, filename: str = "users") -> bytes:
    """``data`` with ``name``'s status set: its line replaced in place, or one appended.

    Comments, blank lines, order and line endings of every other line are
    kept. Raises UsersFileError when ``data`` itself is not a valid file, so
    that a broken edit on disk is never overwritten.

    This is the specification, line by line; ``splice_plan`` finds the same
    edit of a valid file by byte searches alone, and is what a write uses.
    """
    parse_users(data, filename)
    text = data.decode("utf-8")
    entry = f"{name}:{status}"
    lines = text.split("\n")
    for index, found, _status, _error in _entries(text):
        if found == name:
            ending = "\r" if lines[index].endswith("\r") else ""
            lines[index] = entry + ending
            return "\n".join(lines).encode("utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    return (text + entry + "\n").encode("utf-8")


class FileBytes(Protocol):
    """As much of ``bytes`` as ``splice_plan`` uses: ``len``, ``find(sub, start)`` and
    slices with non-negative bounds."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...

    def find(self, sub: bytes, start: int, /) -> int: ...


def splice_plan(data: FileBytes, name: str, status: str) -> tuple[int, int, bytes]:
    """Where the valid file ``data`` changes when ``name``'s status is set:
    ``(start, end, middle)``, the new file being ``data[:start] + middle + data[end:]``.

    ``data`` must be a valid users file (parsed by ``parse_users``, or known
    to be one this process validated or wrote) and ``name`` and ``status``
    valid: nothing is checked, so that setting one status in a million-line
    file costs a search, not a parse. In a valid file the entry for ``name``
    is exactly the line that starts with ``name:`` (a name holds no colon
    and cannot start with ``#`` or a blank, and names are unique); its CR,
    when the line ends in CRLF, is kept. The result is what ``with_status``
    gives, the specification, line by line.

    ``data`` is bytes, or a FileBytes that behaves as the file's bytes (a file
    read only where searched).
    """
    entry = f"{name}:{status}".encode()
    key = name.encode("ascii") + b":"
    size = len(data)
    if data[:len(key)] == key:
        start = 0
    else:
        start = data.find(b"\n" + key, 0) + 1
        if not start:
            ending = b"\n" if size and data[size - 1:size] != b"\n" else b""
            return size, size, ending + entry + b"\n"
    end = data.find(b"\n", start)
    if end < 0:
        end = size
    if data[end - 1:end] == b"\r":
        end -= 1
    return start, end, entry


def splice_status(data: bytes, name: str, status: str) -> bytes:
    """What ``with_status`` returns for the valid file ``data``, by ``splice_plan``."""
    start, end, middle = splice_plan(data, name, status)
    return b"".join((data[:start], middle, data[end:]))
