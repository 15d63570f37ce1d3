"""Who is logged in, an account's last login, terminals and mail spool, read as the
worker may read them.

Every read is bounded: at most ``UTMP_MAX_BYTES`` of utmp, one lastlog
record, at most ``WTMP_TAIL_BYTES`` of wtmp's end (read backwards a piece at
a time, so a huge wtmp costs no more than a small one), one ``lstat`` of the
spool and one ``stat`` a terminal. Only regular files are read, opened
without blocking on a FIFO: a FIFO, a device or a directory where a login
record should be reads as no record, at once. The spool, which its owner may
replace, is looked at without following a link.
"""

import os
import stat
from typing import Optional

from fingerd.finger import lastlog, utmp
from fingerd.finger.longform import Mail, Where

LASTLOG_FILE = "/var/log/lastlog"
WTMP_FILE = "/var/log/wtmp"
MAIL_DIR = "/var/mail"

#: Most bytes read from utmp: as many records as ``parse_utmp`` takes sessions.
UTMP_MAX_BYTES = utmp.MAX_SESSIONS * utmp.RECORD.size
#: Most bytes read from the end of wtmp for one last login: about 2700 records.
WTMP_TAIL_BYTES = 1024 * 1024
#: Bytes read from wtmp at a time, whole records.
WTMP_PIECE_BYTES = 170 * utmp.RECORD.size

#: A terminal's mode bits that must both be set for write(1) to reach it (in.fingerd).
TALKABLE = 0o220

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_regular(path: str) -> Optional[tuple[int, int]]:
    """A descriptor of ``path`` and its size if it is a regular file, else None."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st.st_size


def sessions(path: str, limit: int = UTMP_MAX_BYTES) -> list[utmp.Session]:
    """The sessions in the first ``limit`` bytes of utmp at ``path``; none when it is not
    a regular file or cannot be read."""
    opened = _open_regular(path)
    if opened is None:
        return []
    fd, _size = opened
    try:
        return utmp.parse_utmp(os.pread(fd, limit, 0))
    except OSError:
        return []
    finally:
        os.close(fd)


def last_login(uid: int, login: str, lastlog_file: str = LASTLOG_FILE,
               wtmp_file: str = WTMP_FILE) -> Optional[Where]:
    """The last login as lastlog has it; where lastlog has none (a system without
    lastlog), the latest login of ``login`` in the end of wtmp; else None."""
    return from_lastlog(lastlog_file, uid) or from_wtmp(wtmp_file, login)


def from_lastlog(path: str, uid: int) -> Optional[Where]:
    """The lastlog record of ``uid`` as a Where, or None."""
    opened = _open_regular(path)
    if opened is None:
        return None
    fd, _size = opened
    try:
        record = lastlog.parse_lastlog(os.pread(fd, lastlog.RECORD.size,
                                                lastlog.record_offset(uid)))
    except (OSError, OverflowError):
        return None
    finally:
        os.close(fd)
    return None if record is None else Where(*record)


def from_wtmp(path: str, login: str, limit: int = WTMP_TAIL_BYTES) -> Optional[Where]:
    """The latest login of ``login`` in the last ``limit`` bytes of wtmp, or None."""
    opened = _open_regular(path)
    if opened is None:
        return None
    fd, size = opened
    try:
        end = size - size % utmp.RECORD.size
        floor = max(0, end - (limit - limit % utmp.RECORD.size))
        while end > floor:
            start = max(floor, end - WTMP_PIECE_BYTES)
            session = utmp.last_session(os.pread(fd, end - start, start), login)
            if session is not None:
                return Where(session.line, session.host, session.login_time)
            end = start
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def mail_state(login: str, mail_dir: str = MAIL_DIR) -> Optional[Mail]:
    """The times of the spool ``mail_dir/login``; None when it is missing, empty or not a
    regular file (a link is not followed)."""
    try:
        st = os.lstat(os.path.join(mail_dir, login))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    return Mail(int(st.st_mtime), int(st.st_atime))


def terminal(line: str, now: float) -> tuple[int, bool]:
    """``(idle seconds, writable)`` of ``/dev/LINE``; ``(0, False)`` when it cannot be
    told, as in.fingerd has it. A line that would leave /dev has no terminal."""
    if not line or ".." in line.split("/"):
        return 0, False
    try:
        st = os.stat("/dev/" + line)
    except (OSError, ValueError):
        return 0, False
    return int(now - st.st_atime), st.st_mode & TALKABLE == TALKABLE
