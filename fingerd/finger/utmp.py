"""Login sessions from utmp and wtmp: pure parsing of glibc's ``struct utmp`` (Linux, 384
bytes).

wtmp holds the same records, a login (USER_PROCESS) and a logout each,
oldest first; it is read from its end, a piece at a time.
"""

import struct
from dataclasses import dataclass
from typing import Optional

USER_PROCESS = 7

# ut_type, ut_pid, ut_line[32], ut_id[4], ut_user[32], ut_host[256], ut_exit (2 shorts),
# ut_session, ut_tv (sec, usec), ut_addr_v6[4], 20 unused bytes.
RECORD = struct.Struct("<hxxi32s4s32s256shhiii4i20x")

#: Most sessions read from one utmp file.
MAX_SESSIONS = 4096


@dataclass(frozen=True)
class Session:
    user: str
    line: str
    host: str
    login_time: int


def text_field(raw: bytes) -> str:
    """A NUL-padded text field, invalid UTF-8 replaced."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_utmp(data: bytes) -> list[Session]:
    """The USER_PROCESS sessions in the bytes of a utmp file; trailing partial records ignored."""
    sessions: list[Session] = []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[0] != USER_PROCESS:
            continue
        user = text_field(fields[4])
        if user:
            sessions.append(Session(user, text_field(fields[2]), text_field(fields[5]), fields[9]))
            if len(sessions) >= MAX_SESSIONS:
                break
    return sessions



def last_session(data: bytes, user: str) -> Optional[Session]:
    """The latest USER_PROCESS record of ``user`` in the bytes of a piece of wtmp, or None.

    ``data`` holds whole records; a trailing partial record is ignored.
    """
    wanted = user.encode("utf-8")
    for offset in range((len(data) // RECORD.size - 1) * RECORD.size, -1, -RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[0] == USER_PROCESS and fields[4].split(b"\0", 1)[0] == wanted:
            return Session(user, text_field(fields[2]), text_field(fields[5]), fields[9])
    return None
