"""The last login of an account from lastlog: pure parsing of glibc's ``struct lastlog``.

On Linux the file is indexed by uid, one 292-byte record each (a 32-bit
time, the line, the host); a record never written reads as zeros, a time
of 0 meaning no login recorded.
"""

import struct
from typing import Optional

from fingerd.finger.utmp import text_field

# ll_time (32 bits, also on 64-bit Linux), ll_line[32], ll_host[256].
RECORD = struct.Struct("<i32s256s")


def record_offset(uid: int) -> int:
    """Where the record of ``uid`` starts in the file."""
    return uid * RECORD.size


def parse_lastlog(data: bytes) -> Optional[tuple[str, str, int]]:
    """``(line, host, time)`` of one record's bytes, or None when short or never written."""
    if len(data) < RECORD.size:
        return None
    when, line, host = RECORD.unpack_from(data)
    if when == 0:
        return None
    return text_field(line), text_field(host), when
