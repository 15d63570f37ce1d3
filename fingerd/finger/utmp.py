"""Login sessions from utmp: pure parsing of glibc's ``struct utmp`` (Linux, 384 bytes)."""

import struct
from dataclasses import dataclass

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


def _text(raw):
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_utmp(data):
    """The USER_PROCESS sessions in the bytes of a utmp file; trailing partial records ignored."""
    sessions = []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[0] != USER_PROCESS:
            continue
        user = _text(fields[4])
        if user:
            sessions.append(Session(user, _text(fields[2]), _text(fields[5]), fields[9]))
            if len(sessions) >= MAX_SESSIONS:
                break
    return sessions

