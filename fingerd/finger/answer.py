"""What the finger service answers (README, "What it answers"), given where users come from.

The decisions are pure: the directory of users, the forwarder and the
renderer are handed in, so the rules are tested without sockets, accounts
or other servers.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Protocol

from fingerd.finger.query import Query
from fingerd.limits import MAX_LIST_BYTES
from fingerd.outcomes import (
    FORWARD_FAILED,
    FORWARDED,
    FORWARDING,
    FOUND,
    LIST,
    LISTED,
    NOT_FOUND,
    REFUSED,
)

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"


@dataclass(frozen=True)
class Rules:
    """The operator's choices for the finger service."""

    list_users: bool = False
    forwarding: bool = False
    forward_allow: tuple[str, ...] = ()


class Users(Protocol):
    """Looks users up and lists them (sources.Directory)."""

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]: ...

    def listing(self, limit: int) -> list[str]: ...


class Renders(Protocol):
    """Turns answer lines into wire bytes (output.Renderer)."""

    def render(self, lines: list[str]) -> bytes: ...


#: Asks the remote host: ``(ok, lines)`` (forward.Forwarder).
Forward = Callable[[Query], tuple[bool, list[str]]]


def may_forward(query: Query, rules: Rules) -> bool:
    """Forward only when on, for exactly one host (one hop), and one the operator allows,
    compared as written without regard to case (RFC 1288 3.2.1, CVE-1999-0105)."""
    if not rules.forwarding or len(query.hosts) != 1 or not query.hosts[0]:
        return False
    return not rules.forward_allow or query.hosts[0].lower() in rules.forward_allow


def answer(query: Query, directory: Users, rules: Rules, renderer: Renders,
           forward: Optional[Forward] = None) -> tuple[str, bytes]:
    """``(outcome, wire bytes)`` for ``query``.

    ``directory`` looks users up and lists them; ``forward(query)`` returns
    ``(ok, lines)`` from the remote host (without one, forwarding is denied);
    ``renderer`` turns lines into bytes.
    """
    kind = query.kind
    if kind is FORWARDING:
        if forward is None or not may_forward(query, rules):
            return REFUSED, renderer.render([FORWARD_DENIED])
        ok, relayed = forward(query)
        return (FORWARDED if ok else FORWARD_FAILED), renderer.render(relayed)
    if kind is LIST:
        if not rules.list_users:
            return REFUSED, renderer.render([LIST_DENIED])
        return LISTED, renderer.render(directory.listing(MAX_LIST_BYTES))
    lines = directory.lookup(query.user, query.verbose)
    if lines is None:
        return NOT_FOUND, renderer.render([NO_SUCH_USER])
    return FOUND, renderer.render(lines)
