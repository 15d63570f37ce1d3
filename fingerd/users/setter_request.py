"""The setter's request (README, "What it answers"): pure logic, no I/O."""

from fingerd.users.usersfile import is_valid_name, status_problem


class Refused(ValueError):
    """A set request that changes nothing; its text is the reason sent to the client."""


def parse_set_request(lines):
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
    try:
        status = lines[1].decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("status is not valid UTF-8") from None
    problem = status_problem(status)
    if problem:
        raise Refused(problem)
    return name, status
