"""The setter's request, without sockets: framed as its loop frames it, then parsed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.limits import MAX_STATUS_BYTES
from fingerd.serving.lines import LineTooLong
from fingerd.serving.setter import SETTER_MAX_LINE_BYTES, take_set_request
from fingerd.users.setter_request import Refused, parse_set_request
from fingerd.users.usersfile import is_valid_name, parse_users, status_problem, with_status
from tests.support.fuzzing import NAMES, fed, pieces, tokens


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
    ([b"alice", b"\xff" * 257], "status longer than 256 bytes"),
    ([b"alice", b"\x1b" * 257], "status longer than 256 bytes"),
])
def test_refusals(lines, reason):
    with pytest.raises(Refused, match=reason):
        parse_set_request(lines)


#: What setter requests are made of: names good and bad, line endings and CR games,
#: statuses with controls, separators, invalid UTF-8, and the size limits' edges.
REQUESTS = st.one_of(
    st.binary(max_size=600),
    tokens([b"alice", b"bob", b"-x", b"\r\n", b"\n", b"\r", b"Happy", b" ", b"\t", b":", b"\x00",
            b"\x1b[2J", b"\xff", "é".encode(), "\u2028".encode(), "\u202e".encode(), b"\xc2\x85",
            b"x" * 200]),
    st.builds(lambda name, end, n, tail: name + end + b"s" * n + tail,
              st.sampled_from([b"alice", b"", b"a" * 32, b"a" * 33]),
              st.sampled_from([b"\n", b"\r\n", b"\r", b"\r\r\n"]),
              st.integers(MAX_STATUS_BYTES - 2, SETTER_MAX_LINE_BYTES + 2),
              tokens([b"\r", b"\n", b"s"], max_size=4)))


def framed(data, cuts=()):
    """The request lines as the setter's loop frames ``data`` arriving in pieces (never
    LineTooLong, which would close the connection unanswered)."""
    return fed(take_set_request, pieces(data, cuts), LineTooLong)


@given(REQUESTS, st.lists(st.integers(1, 600), max_size=6))
def test_any_request_is_a_set_or_refused_and_what_is_set_the_file_keeps(data, cuts):
    lines = framed(data)
    assert framed(data, cuts) == lines
    try:
        name, status = parse_set_request(lines)
    except Refused as exc:
        assert str(exc)
        return
    assert is_valid_name(name) and status_problem(status) is None
    assert parse_users(with_status(b"alice:x\nbob:y\n", name, status))[name] == status


#: Statuses as a client would write them: any text but CR and LF, which end lines.
ONE_LINE = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"),
                   max_size=300)


@given(NAMES, ONE_LINE, st.sampled_from([b"\n", b"\r\n"]))
def test_a_request_written_by_a_client_reads_back(name, status, ending):
    data = name.encode() + ending + status.encode() + ending
    lines = framed(data)
    if status_problem(status) is None:
        assert parse_set_request(lines) == (name, status)
    else:
        with pytest.raises(Refused):
            parse_set_request(lines)


@pytest.mark.parametrize("request_, reason", [
    (b"alice\r\n" + b"x" * 5000 + b"\r\n", "status longer than 256 bytes"),
    (b"alice\r\n" + "\u00e9".encode() * 2000, "status longer than 256 bytes"),
    (b"a" * 5000 + b"\r\nx\r\n", "invalid user name"),
    (b"a" * (SETTER_MAX_LINE_BYTES + 2), "invalid user name"),
])
def test_a_line_past_the_framing_limit_is_a_request_refused_for_its_length(request_, reason):
    """However it arrives, before the line ends or after."""
    for cuts in ((), (SETTER_MAX_LINE_BYTES // 2, 7, 3000)):
        lines = framed(request_, cuts)
        assert max(map(len, lines)) <= SETTER_MAX_LINE_BYTES + 1
        with pytest.raises(Refused, match=reason):
            parse_set_request(lines)
