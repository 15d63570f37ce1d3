"""Local accounts by uid, for the setter's policy: their login and their admin rights."""

from __future__ import annotations

import grp
import os
import pwd

from fingerd.users.setter_request import Requester


class Requesters:
    """Turns the uid that owns a client's end into a Requester.

    ``admin_group`` is resolved once, at startup (a group that does not
    exist is a configuration error); membership, primary or supplementary,
    is looked up at each request, so a change to /etc/group needs no restart.
    """

    def __init__(self, admin_group: str = "") -> None:
        self.admin_gid = grp.getgrnam(admin_group).gr_gid if admin_group else None

    def of(self, uid: int | None) -> Requester | None:
        """The Requester for ``uid``; None when the uid is None (not known)."""
        if uid is None:
            return None
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return Requester(uid, None)
        admin = (self.admin_gid is not None
                 and self.admin_gid in os.getgrouplist(entry.pw_name, entry.pw_gid))
        return Requester(uid, entry.pw_name, admin)
