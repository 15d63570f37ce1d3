"""What fingerd keeps in Redis, and which of it may be served: pure logic, no I/O.

The statuses live in the hash ``PREFIX:users`` (field: user name, value:
status); a change is announced on the channel ``PREFIX:changes`` with the
name that changed, or ``*`` after the whole hash was replaced. A message is
only a hint to read Redis again: pub/sub loses what is sent while a
subscriber is away. Anything may write the hash, so every entry read back is
held to the users-file rules (section 4) before it is served, and an entry
too large to be one is never read whole: the scripts below, run by Redis,
hand back its length instead.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

from fingerd.limits import MAX_NAME_CHARS, MAX_STATUS_BYTES
from fingerd.users.usersfile import is_valid_name, status_problem

#: The hint that says the whole hash changed (``fingerd-ctl import``); never a user name.
EVERYTHING = "*"
#: The longest field that can be a user name (names are ASCII) and value that can be
#: a status, in bytes: anything longer is skipped unread.
LONGEST_FIELD = MAX_NAME_CHARS
LONGEST_VALUE = MAX_STATUS_BYTES
#: Bytes of a field a log line shows, and all fingerd reads of a field too long.
SHOWN_BYTES = 40

#: One HSCAN step: KEYS[1] the hash; ARGV the cursor, the count, LONGEST_FIELD,
#: LONGEST_VALUE and SHOWN_BYTES. Returns the next cursor, the entries short enough as
#: field, value, ..., and the others as shown field, field length, value length, ...
SCAN_SCRIPT = """
local scanned = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local longest_field, longest_value = tonumber(ARGV[3]), tonumber(ARGV[4])
local entries, kept, unread = scanned[2], {}, {}
for i = 1, #entries, 2 do
    local field, value = entries[i], entries[i + 1]
    if #field <= longest_field and #value <= longest_value then
        kept[#kept + 1] = field
        kept[#kept + 1] = value
    else
        unread[#unread + 1] = string.sub(field, 1, tonumber(ARGV[5]))
        unread[#unread + 1] = #field
        unread[#unread + 1] = #value
    end
end
return {scanned[1], kept, unread}
"""

#: The values of some fields: KEYS[1] the hash; ARGV LONGEST_VALUE, then the fields.
#: Returns for each its value, nil when there is none, or the length of a longer one.
FIELDS_SCRIPT = """
local longest, values = tonumber(ARGV[1]), {}
for i = 2, #ARGV do
    local length = redis.call('HSTRLEN', KEYS[1], ARGV[i])
    if length > longest then
        values[i - 1] = length
    else
        values[i - 1] = redis.call('HGET', KEYS[1], ARGV[i])
    end
end
return values
"""


def users_key(prefix: str) -> str:
    return f"{prefix}:users"


def changes_channel(prefix: str) -> str:
    return f"{prefix}:changes"


def hinted_name(data: bytes) -> str | None:
    """The user name a hint carries, or None when it can be no one's (nothing to read)."""
    if len(data) > LONGEST_FIELD:
        return None
    name = data.decode("utf-8", "replace")
    return name if is_valid_name(name) else None


def unread_problem(field_bytes: int, value_bytes: int) -> str:
    """Why an entry with a field and value of these lengths was skipped without reading it."""
    if field_bytes > LONGEST_FIELD:
        return f"invalid user name (a field of {field_bytes} bytes, not read)"
    return f"status longer than {MAX_STATUS_BYTES} bytes ({value_bytes} bytes, not read)"


def entry_problem(field: bytes, value: bytes
                  ) -> tuple[str, str, None] | tuple[None, None, str]:
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


#: The query options of a Redis URL whose values redacted() hides, as the client
#: library reads their names.
SECRET_OPTIONS = ("password",)


def redacted(url: str) -> str:
    """``url`` without its password, after the user name or as a query option (the client
    library reads both), for logs and messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    head, mark, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    options = (_hidden(option) for option in query.split("&"))
    return head + mark + "&".join(options) + hash_mark + fragment if mark else url


def _hidden(option: str) -> str:
    """One ``NAME=VALUE`` of a query, its value hidden if it is a secret."""
    name, _, _ = option.partition("=")
    return f"{name}=***" if unquote_plus(name) in SECRET_OPTIONS else option


def shown_field(field: bytes) -> str:
    """A field of the hash as a log line may show it: escaped, at most 40 characters."""
    return repr(field[:SHOWN_BYTES].decode("utf-8", "backslashreplace"))
