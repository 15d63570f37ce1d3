"""utmp, wtmp and lastlog records for tests, written as login(1) writes them."""

from fingerd.finger import lastlog
from fingerd.finger.utmp import RECORD, USER_PROCESS


def pack_session(session, pid=1):
    """The utmp record of ``session``, as login(1) would write it."""
    return RECORD.pack(USER_PROCESS, pid, session.line.encode(), b"", session.user.encode(),
                       session.host.encode(), 0, 0, 0, session.login_time, 0, 0, 0, 0, 0)


def pack_lastlog(line, host, when):
    """The lastlog record of a login on ``line`` from ``host`` at ``when``."""
    return lastlog.RECORD.pack(when, line.encode(), host.encode())
