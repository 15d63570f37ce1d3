"""The RFC 1288 query grammar: pure logic, no I/O.

    {Q1} ::= [{W}|{W}{S}{U}]{C}
    {Q2} ::= [{W}{S}][{U}]{H}{C}
    {H}  ::= @hostname | @hostname{H}

Liberal in what it accepts (RFC 1288 2.3): leading and trailing blanks are
ignored (the Debian client sends ``/W \\r\\n`` for ``finger -l @host``), ``/W``
is recognised in either case, and any byte sequence parses to some Query.
Whether a user name is valid is the answering service's business, not the
parser's: ``/Walice`` or ``-l`` are just names that no user has.
"""

from dataclasses import dataclass

from fingerd.outcomes import FORWARDING, LIST, USER, VERBOSE

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
