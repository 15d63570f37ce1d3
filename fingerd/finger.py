"""What the finger service answers (CONTRACT section 5): pure logic, no I/O."""

from fingerd.limits import MAX_LIST_BYTES
from fingerd.output import wire_lines
from fingerd.query import FORWARD, LIST

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"

# Outcomes, the values of the metrics' ``outcome`` label for this service.
FOUND = "found"
NOT_FOUND = "not_found"
LISTED = "listed"
REFUSED = "refused"
OUTCOMES = (FOUND, NOT_FOUND, LISTED, REFUSED)

_NO_SUCH_USER = wire_lines([NO_SUCH_USER])
_LIST_DENIED = wire_lines([LIST_DENIED])
_FORWARD_DENIED = wire_lines([FORWARD_DENIED])


def answer(query, users, list_users):
    """``(outcome, wire bytes)`` for ``query`` against the ``users`` table.

    ``users`` maps names to statuses and is only read. Forwarding is always
    refused here (RFC 1288 3.2.1).
    """
    kind = query.kind
    if kind is FORWARD:
        return REFUSED, _FORWARD_DENIED
    if kind is LIST:
        if not list_users:
            return REFUSED, _LIST_DENIED
        return LISTED, user_list(users)
    status = users.get(query.user)
    if status is None:
        return NOT_FOUND, _NO_SUCH_USER
    return FOUND, wire_lines([status])


def user_list(users, limit=MAX_LIST_BYTES):
    """One ``user: status`` line a user, cut with a closing note past ``limit`` bytes."""
    lines = []
    size = 0
    for shown, (name, status) in enumerate(users.items()):
        line = f"{name}: {status}"
        size += len(line) + 2
        if size > limit:
            lines.append(f"({len(users) - shown} more users not shown)")
            break
        lines.append(line)
    return wire_lines(lines)
