"""What fingerd keeps in Redis, and which of it may be served: pure logic, no I/O.

The statuses live in the hash ``PREFIX:users`` (field: user name, value:
status); a change is announced on the channel ``PREFIX:changes`` with the
name that changed, or ``*`` after the whole hash was replaced. A message is
only a hint to read Redis again: pub/sub loses what is sent while a
subscriber is away. Anything may write the hash, so every entry read back is
held to the users-file rules (section 4) before it is served.
"""

from urllib.parse import urlsplit, urlunsplit

from fingerd.users.usersfile import is_valid_name, status_problem

#: The hint that says the whole hash changed (``fingerd-ctl import``); never a user name.
EVERYTHING = "*"


def users_key(prefix):
    return f"{prefix}:users"


def changes_channel(prefix):
    return f"{prefix}:changes"


def entry_problem(field, value):
    """``(name, status, None)`` for an entry that may be served, else ``(None, None, why)``.

    ``field`` and ``value`` are the bytes Redis holds.
    """
    try:
        name = field.decode("utf-8")
        status = value.decode("utf-8")
    except UnicodeDecodeError:
        return None, None, "not valid UTF-8"
    if not is_valid_name(name):
        return None, None, "invalid user name"
    problem = status_problem(status)
    if problem is not None:
        return None, None, problem
    return name, status, None


def redacted(url):
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def shown_field(field):
    """A field of the hash as a log line may show it: escaped, at most 40 characters."""
    return repr(field[:40].decode("utf-8", "backslashreplace"))
