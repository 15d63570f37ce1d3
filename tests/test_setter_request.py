"""The setter's request, without sockets."""

import pytest

from fingerd.users.setter_request import Refused, parse_set_request


def test_valid_request():
    assert parse_set_request([b"alice", "Grüße".encode()]) == ("alice", "Grüße")


def test_empty_status_is_allowed():
    assert parse_set_request([b"alice", b""]) == ("alice", "")


@pytest.mark.parametrize("lines, reason", [
    ([], "missing user line"),
    ([b"alice"], "missing status line"),
    ([b"", b"x"], "invalid user name"),
    ([b"al ice", b"x"], "invalid user name"),
    ([b"../../etc/passwd", b"x"], "invalid user name"),
    ([b"POST / HTTP/1.1", b"x"], "invalid user name"),
    ([b"\xff", b"x"], "invalid user name"),
    ([b"alice", b"\xff"], "status is not valid UTF-8"),
    ([b"alice", b"a\x1b[2J"], "status contains a control character"),
    ([b"alice", b"back\rbob:HIJACKED"], "status contains a control character"),
    ([b"alice", b"x" * 257], "status longer than 256 bytes"),
])
def test_refusals(lines, reason):
    with pytest.raises(Refused, match=reason):
        parse_set_request(lines)
