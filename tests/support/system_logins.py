"""Login records and mail spools written where the system keeps them, and put back.

Debian's in.fingerd reads only the system's own paths, so a test that
compares with it writes there: a lastlog record at a test account's uid,
a wtmp record appended, /var/run/utmp, a spool in /var/mail, a terminal
in /dev. ``restore`` puts back every byte and removes every file it made,
newest change first.
"""

import os

from fingerd.finger import lastlog, logins
from tests.support.utmp import pack_lastlog, pack_session

UTMP_FILE = "/var/run/utmp"


class SystemLogins:
    def __init__(self):
        self._undo = []

    def _keep(self, path):
        """Remember ``path`` as it is (absent, or its bytes past ``size``) for restore."""
        if not os.path.exists(path):
            self._undo.append(lambda: os.unlink(path))
            return None
        return os.path.getsize(path)

    def lastlog(self, uid, line, host, when):
        path, offset = logins.LASTLOG_FILE, lastlog.record_offset(uid)
        size = self._keep(path)
        with open(path, "r+b" if size is not None else "w+b") as f:
            f.seek(offset)
            old = f.read(lastlog.RECORD.size)
            f.seek(offset)
            f.write(pack_lastlog(line, host, when))
        if size is not None:
            self._undo.append(lambda: _put_back(path, offset, old, size))

    def wtmp(self, session):
        size = self._keep(logins.WTMP_FILE)
        with open(logins.WTMP_FILE, "ab") as f:
            f.write(pack_session(session))
        if size is not None:
            self._undo.append(lambda: os.truncate(logins.WTMP_FILE, size))

    def utmp(self, sessions):
        if os.path.exists(UTMP_FILE):
            with open(UTMP_FILE, "rb") as f:
                old = f.read()
            self._undo.append(lambda: _write(UTMP_FILE, old))
        else:
            self._undo.append(lambda: os.unlink(UTMP_FILE))
        _write(UTMP_FILE, b"".join(pack_session(s) for s in sessions))
        os.chmod(UTMP_FILE, 0o644)

    def mail(self, login, uid, received, read):
        """A spool of ``login``'s (which must not have one) delivered to at ``received``
        and read at ``read``."""
        path = os.path.join(logins.MAIL_DIR, login)
        with open(path, "xb") as f:
            f.write(b"From nobody\n\nHello.\n")
        self._undo.append(lambda: os.unlink(path))
        os.chown(path, uid, -1)
        os.chmod(path, 0o600)
        os.utime(path, (read, received))

    def terminal(self, line, idle_since, mode):
        """``/dev/LINE`` (which must not exist), last used at ``idle_since``."""
        path = "/dev/" + line
        with open(path, "xb"):
            pass
        self._undo.append(lambda: os.unlink(path))
        os.chmod(path, mode)
        os.utime(path, (idle_since, idle_since))

    def restore(self):
        while self._undo:
            self._undo.pop()()


def _put_back(path, offset, old, size):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(old)
        f.truncate(size)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
