"""The setter's request and who may make it (README, "What it answers"): pure logic, no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from fingerd.limits import MAX_STATUS_BYTES
from fingerd.users.usersfile import is_valid_name, status_problem

#: Policies: local users set their own status only, or anyone sets any.
OWN = "own"
ANY = "any"
POLICIES = (OWN, ANY)


@dataclass(frozen=True)
class Requester:
    """The local account that owns the client's end, as the kernel told it."""

    uid: int
    login: Optional[str]
    admin: bool = False


def may_set(policy: str, name: str, requester: Optional[Requester]) -> bool:
    """Whether ``requester`` (None: it could not be told) may set ``name``'s status.

    Under ``own`` only the account of that login name, root, or a member of
    the admin group may; an account that could not be told may not.
    """
    if policy == ANY:
        return True
    if requester is None:
        return False
    return requester.uid == 0 or requester.admin or requester.login == name


class Refused(ValueError):
    """A set request that changes nothing; its text is the reason sent to the client."""


def parse_set_request(lines: Sequence[bytes]) -> tuple[str, str]:
    """``(name, status)`` from the request lines ``user`` and ``status``, or raise Refused."""
    if not lines:
        raise Refused("missing user line")
    if len(lines) < 2:
        raise Refused("missing status line")
    try:
        name = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise Refused("invalid user name") from None
    if not is_valid_name(name):
        raise Refused("invalid user name")
    if len(lines[1]) > MAX_STATUS_BYTES:  # whatever it holds, and before it is decoded
        raise Refused(f"status longer than {MAX_STATUS_BYTES} bytes")
    try:
        status = lines[1].decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("status is not valid UTF-8") from None
    problem = status_problem(status)
    if problem:
        raise Refused(problem)
    return name, status
