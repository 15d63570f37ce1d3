"""Reading a user's own files (``~/.plan`` and the like) without being fooled.

The worker reads them unprivileged, and only a regular file owned by the
user, opened without following a symbolic link (O_NOFOLLOW) or blocking on
a FIFO (O_NONBLOCK), and at most ``limit`` bytes of it. A link to
/etc/shadow, a device or someone else's file discloses nothing.
"""

import os
import stat
from typing import Optional

#: A file's ``(text, cut)``, or None when it is not shown.
Found = Optional[tuple[str, bool]]

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_user_file(home: str, name: str, uid: int, limit: int) -> Found:
    """``(text, cut)`` of ``home/name`` if it is safe to show, else None."""
    try:
        fd = os.open(os.path.join(home, name), _FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return None
        data = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def opted_out(home: str, marker: str = ".nofinger") -> bool:
    """True when ``home/marker`` exists, or when the worker cannot tell (the home is
    closed to it): someone who may have asked not to be shown never is."""
    try:
        os.lstat(os.path.join(home, marker))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True
