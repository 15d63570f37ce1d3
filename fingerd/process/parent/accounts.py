"""The account the worker runs as: resolved at startup, so a typo fails fast."""

import grp
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    if config.setter_admin_group:
        try:
            grp.getgrnam(config.setter_admin_group)
        except KeyError:
            raise AccountError(f"{config.where('setter', 'admin_group')}: [setter] admin_group: "
                               f"no such group {config.setter_admin_group!r}") from None
    return Account(config.user, entry.pw_uid, gid)
