"""Shedding root for good, and proving it (after OpenSSH's permanently_set_uid).

Order matters: supplementary groups first, then the gid (which needs root),
then the uid; then PR_SET_NO_NEW_PRIVS, so that no later exec can gain
privileges; then every way back to root is tried and must fail.
"""

import ctypes
import os
from collections.abc import Callable

PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class PrivilegeError(RuntimeError):
    """The process could not shed root, or could get it back."""


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``:``gid`` with no supplementary groups, irrevocably, or raise."""
    if uid == 0:
        raise PrivilegeError("refusing to run the worker as root")
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot change to uid {uid} gid {gid}: {exc.strerror}") from None
    set_no_new_privs()
    verify_dropped(uid, gid)


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise PrivilegeError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(errno)}")


def verify_dropped(uid: int, gid: int) -> None:
    """Raise PrivilegeError unless every id is the target's and root is out of reach."""
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(f"ids are {os.getresuid()} / {os.getresgid()}, "
                             f"not {uid} / {gid}")
    if os.getgroups() not in ([], [gid]):
        raise PrivilegeError(f"supplementary groups {os.getgroups()} remain")
    attempts: tuple[tuple[str, Callable[[], None]], ...] = (
        ("setuid(0)", lambda: os.setuid(0)), ("seteuid(0)", lambda: os.seteuid(0)),
        ("setgid(0)", lambda: os.setgid(0)), ("setegid(0)", lambda: os.setegid(0)),
        ("setgroups([0])", lambda: os.setgroups([0])))
    for name, attempt in attempts:
        try:
            attempt()
        except PermissionError:
            continue
        raise PrivilegeError(f"{name} succeeded after dropping privileges")
