"""The account the worker runs as: resolved at startup, so a typo fails fast, and what it
can read checked there, so that a file only root can read fails the start before it binds."""

import grp
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from fingerd.process.worker.privdrop import PrivilegeError, drop_privileges

if TYPE_CHECKING:
    from fingerd.config import Config


class AccountError(ValueError):
    """The configured user or group does not exist."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def resolve_account(config: "Config") -> Account:
    """The Account for ``[fingerd] user`` and ``group``; raise AccountError, for those
    and for a ``[setter] admin_group`` that does not exist."""
    try:
        entry = pwd.getpwnam(config.user)
    except KeyError:
        raise AccountError(f"{config.where('fingerd', 'user')}: [fingerd] user: "
                           f"no such account {config.user!r}") from None
    if entry.pw_uid == 0:
        raise AccountError(f"{config.where('fingerd', 'user')}: [fingerd] user: "
                           f"{config.user!r} is root; the worker must run unprivileged")
    gid = entry.pw_gid
    if config.group:
        try:
            gid = grp.getgrnam(config.group).gr_gid
        except KeyError:
            raise AccountError(f"{config.where('fingerd', 'group')}: [fingerd] group: "
                               f"no such group {config.group!r}") from None
    if gid == 0:
        # Group root opens what is root's by group: no less a privilege than the user.
        key, what = ("group", f"{config.group!r} is") if config.group else \
            ("user", f"{config.user!r} has as its primary group")
        raise AccountError(f"{config.where('fingerd', key)}: [fingerd] {key}: {what} "
                           f"gid 0 (root); the worker must run unprivileged: name "
                           f"a group of its own in [fingerd] group")
    if config.setter_admin_group:
        try:
            grp.getgrnam(config.setter_admin_group)
        except KeyError:
            raise AccountError(f"{config.where('setter', 'admin_group')}: [setter] admin_group: "
                               f"no such group {config.setter_admin_group!r}") from None
    return Account(config.user, entry.pw_uid, gid)


def unreadable_by(account: Account, path: str) -> Optional[OSError]:
    """What the worker, run as ``account``, meets opening ``path``: None when it can, or
    when there is no such file (it starts without one), or when no child could tell
    (none forked, or it was killed): what cannot be told is not failed. Root only.

    A child becomes the account as the worker does (drop_privileges) and opens the
    file: the directories on the way, ACLs and security modules count as they will
    for the worker, and the parent's root never stands in for it.
    """
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        code = 0
        try:
            drop_privileges(account.uid, account.gid)
            with open(path, "rb"):
                pass
        except (FileNotFoundError, PrivilegeError):
            pass  # no file: none to read; no drop: the worker fails on it, saying why
        except OSError as exc:
            code = exc.errno or 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return OSError(code, os.strerror(code), path) if code > 0 else None
