"""An HTTP/1.x request head, read strictly: pure logic, no I/O.

The web directory and the metrics endpoint both read their requests here.
A head is taken from a buffer as bytes arrive and is read the same however
they arrive: whole or a byte at a time, its lines ended by CRLF or a bare
LF (RFC 9112 2.2), its size bounded across reads. What is not a request
this parser can vouch for (RFC 9112 3 and 5: the request line, field
names and values, obsolete line folding, a bare CR, Host) raises HeadError
with the status to answer; so does a head over MAX_HEAD_BYTES. Only the
head is read: each connection carries one request and is closed after it,
so a body that follows is never taken for another request.

A common head (GET or HEAD, plain fields: a curl's, a browser's) is read in
one pass (``common_head``), which takes half the time of reading it line by
line (``read_head``) and gives the same Head or the same error.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

#: Largest request head read, its blank line included.
MAX_HEAD_BYTES = 8192
#: Bytes of the request line judged as they arrive, before the head ends.
EARLY_LINE_BYTES = 256

#: Reason phrases of the statuses the daemon's HTTP services send.
REASONS = {
    200: "OK", 303: "See Other", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_LEADING_BLANK_LINES = re.compile(rb"(?:\r?\n)*")
_END = re.compile(rb"\n\r?\n")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
#: A request line not ended yet, as far as it came: its method, ended by a space, then
#: visible characters (the target) and perhaps a space and more (the version).
_REQUEST_LINE_BEGUN = re.compile(rb"(" + _TOKEN + rb") (?:[\x21-\x7e]+(?: [\x21-\x7e]*)?)?")
#: What may yet become a request line and its CR: a beginning of one, or a CR that an LF
#: may make a blank line. Anything else cannot, whatever follows it.
_REQUEST_LINE_PREFIX = re.compile(
    rb"\r|(?:" + _TOKEN + rb"(?: (?:[\x21-\x7e]+(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9]"
    rb"(?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?)?)?")
#: A field value: visible characters and obs-text, blanks only between them.
_VALUE = rb"[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*"
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")?[ \t]*")
#: The common head, read in one pass: GET or HEAD of an origin-form target with no
#: fragment, HTTP/1.0 or 1.1, fields of a plain name and a value of visible ASCII with
#: single spaces inside, every line ended by CRLF from the first byte on. Any head it
#: matches ``read_head`` reads the same, so it is only a shortcut.
_COMMON = re.compile(
    rb"(GET|HEAD) (/[\x21\x22\x24-\x7e]*) HTTP/1\.([01])\r\n"
    rb"((?:[-0-9A-Za-z]+: [\x21-\x7e]+(?: [\x21-\x7e]+)*\r\n)*)\r\n")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?]*")
#: A Host field's value (RFC 9112 3.2, RFC 3986 3.2.2): a reg-name, which an IPv4
#: address is too, or an IPv6 address in brackets; then an optional port. What the
#: pattern leaves, a reg-name's %XX and the address, ``_valid_host`` checks after it.
_HOST = re.compile(r"([-.0-9A-Za-z_~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]+")


class HeadError(ValueError):
    """A request answered with an error ``status`` (400, 431, 505); the message says why.
    ``method`` is the request's where what was read tells it (``request_method``), else
    None: an error to a HEAD has no body either."""

    def __init__(self, status: int, reason: str, method: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.method = method


class Head(NamedTuple):
    """A request head. ``path`` and ``query`` are as sent (percent-encoded); ``fields`` are
    ``(name in lower case, value)`` pairs in the order sent."""

    method: str
    path: str
    query: str
    version: tuple[int, int]
    fields: tuple[tuple[str, str], ...]

    def field(self, name: str) -> str | None:
        """The value of field ``name`` (lower case), repeats joined by commas; None if absent."""
        values = [value for key, value in self.fields if key == name]
        return ", ".join(values) if values else None


def take_head(buf: bytes | bytearray, eof: bool) -> Head | None:
    """The Head once ``buf`` holds a whole one, else None; raise HeadError.

    With ``eof`` the input is complete: a head left unfinished is an error,
    and None means the client sent nothing but blank lines.

    Neither reading can finish before a blank line ends the head, so while none
    does (and the head is under the bound) the answer is None without them: a
    client that sends a byte at a time costs a substring search a byte, not a
    reading of all it has sent.
    """
    if not eof and len(buf) < MAX_HEAD_BYTES and not _ended(buf):
        _check_request_line(buf)
        return None
    return common_head(buf) or read_head(buf, eof)


def _check_request_line(buf: bytes | bytearray) -> None:
    """Raise the HeadError of the request line at the start of ``buf`` (after its blank
    lines) as soon as its first EARLY_LINE_BYTES tell it, before the head ends: the
    line there whole and not a request line HTTP/1.x serves, or begun as none can be
    (a TLS hello, an SSH banner). A client that sends no request is told so at once,
    rather than held until ``request_timeout`` and closed unanswered. ``read_head``
    asks this first, so a head reads the same however its bytes arrive; the window
    keeps a head sent a byte at a time from costing a reading of its line a byte."""
    leading = _LEADING_BLANK_LINES.match(buf)
    assert leading is not None, "the pattern matches the empty string"
    start = leading.end()
    window = min(start + EARLY_LINE_BYTES, MAX_HEAD_BYTES)
    end = buf.find(b"\n", start, window)
    if end >= 0:
        _request_line(bytes(buf[start:end]).removesuffix(b"\r"))
    elif not _REQUEST_LINE_PREFIX.fullmatch(bytes(buf[start:window])):
        raise HeadError(400, "malformed request line")


def _ended(buf: bytes | bytearray) -> bool:
    """Whether ``read_head`` finds a blank line ending the head in ``buf``, found by
    substring search. The CRs and LFs it skips first are the LFs and CRLFs before the
    first CR that another follows; a CR left at their end cannot start the blank line."""
    blanks = len(buf) - len(buf.lstrip(b"\r\n"))
    doubled = buf.find(b"\r\r", 0, blanks)
    start = blanks if doubled < 0 else doubled
    return buf.find(b"\n\r\n", start) >= 0 or buf.find(b"\n\n", start) >= 0


def common_head(buf: bytes | bytearray) -> Head | None:
    """The Head of a common request at the start of ``buf``, read in one pass; None when
    ``buf`` holds no such head (yet), for ``read_head`` to read or refuse."""
    common = _COMMON.match(buf)
    if common is None or common.end() > MAX_HEAD_BYTES:
        return None
    method, target, minor, block = common.groups()
    path, _, query = target.decode("ascii").partition("?")
    fields = tuple([(name.lower(), value) for name, _, value in
                    [line.partition(": ") for line in block.decode("ascii").split("\r\n")[:-1]]])
    head = Head(method.decode("ascii"), path, query, (1, 1) if minor == b"1" else (1, 0),
                fields)
    _check_fields(head)
    return head


def read_head(buf: bytes | bytearray, eof: bool) -> Head | None:
    """``take_head`` for any head, common or not: the strict reading, line by line."""
    _check_request_line(buf)
    leading = _LEADING_BLANK_LINES.match(buf)
    assert leading is not None, "the pattern matches the empty string"
    start = leading.end()
    end = _END.search(buf, start)
    if end is None:
        if len(buf) >= MAX_HEAD_BYTES:
            raise HeadError(431, "request head over 8 KiB")
        if eof and start < len(buf):
            raise HeadError(400, "request head not ended by a blank line")
        return None
    if end.end() > MAX_HEAD_BYTES:
        raise HeadError(431, "request head over 8 KiB")
    lines = [line[:-1] if line.endswith(b"\r") else line
             for line in bytes(buf[start:end.start()]).split(b"\n")]
    for line in lines:
        if b"\r" in line:
            raise HeadError(400, "bare CR in the request head")
    return _parse(lines)


def _request_line(line: bytes) -> tuple[str, str, str, tuple[int, int]]:
    """``(method, path, query, version)`` of a request line without its line ending."""
    request = _REQUEST_LINE.fullmatch(line)
    if request is None:
        raise HeadError(400, "malformed request line")
    method, target = request.group(1).decode("ascii"), request.group(2).decode("ascii")
    version = (int(request.group(3)), int(request.group(4)))
    if version[0] != 1:
        raise HeadError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    # CONNECT's target is an authority (RFC 9112 3.2.3): a request of a method not
    # served here, answered 405 as any other, not a malformed one.
    path, query = (target, "") if method == "CONNECT" else _split_target(target)
    return method, path, query, version


def _parse(lines: list[bytes]) -> Head:
    method, path, query, version = _request_line(lines[0])
    fields = []
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            raise HeadError(400, "malformed header field" if line[:1] not in b" \t"
                            else "obsolete line folding")
        value = field.group(2) or b""
        fields.append((field.group(1).decode("ascii").lower(), value.decode("latin-1")))
    head = Head(method, path, query, version, tuple(fields))
    _check_fields(head)
    return head


def _split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of an origin-form target, or of an absolute-form one (RFC 9112
    3.2.2); ``*`` stands for itself. Anything else, or a fragment, is malformed."""
    if target != "*" and not target.startswith("/"):
        absolute = _ABSOLUTE.match(target)
        if absolute is None:
            raise HeadError(400, "malformed request target")
        target = target[absolute.end():] or "/"
        if not target.startswith(("/", "?")):
            raise HeadError(400, "malformed request target")
        if target.startswith("?"):
            target = "/" + target
    if "#" in target:
        raise HeadError(400, "a fragment in the request target")
    path, _, query = target.partition("?")
    return path, query


def _check_fields(head: Head) -> None:
    hosts = [value for name, value in head.fields if name == "host"]
    if len(hosts) > 1 or (head.version >= (1, 1) and not hosts):
        raise HeadError(400, "an HTTP/1.1 request needs exactly one Host field")
    if hosts and not _valid_host(hosts[0]):
        raise HeadError(400, "an invalid Host field")
    lengths = [value for name, value in head.fields if name == "content-length"]
    if len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(lengths[0])):
        raise HeadError(400, "malformed Content-Length")


def _valid_host(value: str) -> bool:
    host = _HOST.fullmatch(value)
    if host is None:
        return False
    name = host.group(1)
    if not name.startswith("["):
        return "%" not in name or _BAD_PERCENT.search(name) is None
    try:
        ipaddress.IPv6Address(name[1:-1])
    except ValueError:
        return False
    return True


def take_request(buf: bytes | bytearray, eof: bool) -> Head | HeadError | list[bytes] | None:
    """``take_head`` for a serving loop's ``take_request``: the Head, or the HeadError to
    answer, once either is known; None while more may come; an empty list when the
    client closed having sent nothing."""
    try:
        head = take_head(buf, eof)
    except HeadError as exc:
        return HeadError(exc.status, str(exc), request_method(buf))
    return [] if head is None and eof else head


def request_method(buf: bytes | bytearray) -> str | None:
    """The method of the request that begins ``buf`` after its blank lines, once what was
    read tells it: its request line there whole and well formed, whatever follows it; or
    the line not ended yet (cut by the bound, the input's end, or an answer made before
    the rest came) but begun as one, its method ended by a space (``HEAD /...``).

    None while nothing tells it: nothing read yet, a method not yet ended, or a line
    that is no request line. The answer to such a request is the one to an unknown
    method, which has a body: only the answer to HEAD has none (RFC 9110 9.3.2).
    """
    leading = _LEADING_BLANK_LINES.match(buf)
    assert leading is not None, "the pattern matches the empty string"
    start = leading.end()
    end = buf.find(b"\n", start)
    line = _REQUEST_LINE if end >= 0 else _REQUEST_LINE_BEGUN
    request = line.fullmatch(bytes(buf[start:end if end >= 0 else len(buf)]).removesuffix(b"\r"))
    return None if request is None else request.group(1).decode("ascii")
