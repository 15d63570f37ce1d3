"""What a finger query line is answered with (README, "What it answers"): its grammar,
then the rules applied to it. Pure logic, no I/O.

    {Q1} ::= [{W}|{W}{S}{U}]{C}
    {Q2} ::= [{W}{S}][{U}]{H}{C}
    {H}  ::= @hostname | @hostname{H}

The parser is liberal in what it accepts (RFC 1288 2.3): leading and
trailing blanks are ignored (the Debian client sends ``/W \\r\\n`` for
``finger -l @host``), ``/W`` is recognised in either case, and any byte
sequence parses to some Query. Whether a user name is valid is the
directory's business, not the parser's: ``/Walice`` or ``-l`` are just
names that no user has.

The directory of users, the forwarder and the renderer are handed in, so
the rules are tested without sockets, accounts or other servers.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Protocol

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
    USER,
    VERBOSE,
)

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"

_BLANKS = " \t"


@dataclass(frozen=True)
class Query:
    """One parsed query line. ``hosts`` is in the order written, right-most last."""

    verbose: bool
    user: str
    hosts: tuple[str, ...]

    @property
    def kind(self) -> str:
        """LIST for {C}, FORWARDING for any {Q2}, else VERBOSE or USER: the metrics' kinds."""
        if self.hosts:
            return FORWARDING
        if not self.user:
            return LIST
        return VERBOSE if self.verbose else USER


def parse_query(line: bytes) -> Query:
    """Parse one query line (bytes, line ending already removed) into a Query.

    Bytes are decoded as Latin-1 so that no input can fail to decode; a name
    holding a byte above 127 is simply not a valid user name.
    """
    text = line.decode("latin-1").strip(_BLANKS)
    verbose = False
    if text[:2] in ("/W", "/w") and (len(text) == 2 or text[2] in _BLANKS):
        verbose = True
        text = text[2:].lstrip(_BLANKS)
    user, at, hosts = text.partition("@")
    return Query(verbose, user, tuple(hosts.split("@")) if at else ())


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
