"""Framing of request lines."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.limits import MAX_QUERY_BYTES
from fingerd.serving.lines import LineTooLong, take_lines
from fingerd.serving.setter import SETTER_MAX_LINE_BYTES
from tests.support.fuzzing import byte_by_byte, fed, pieces, tokens


def test_needs_more_until_the_line_ends():
    assert take_lines(b"alic", 1, 1024, eof=False) is None


def test_crlf_line():
    assert take_lines(b"alice\r\n", 1, 1024, eof=False) == [b"alice"]


def test_bare_lf_line():
    assert take_lines(b"alice\n", 1, 1024, eof=False) == [b"alice"]


def test_bytes_after_the_wanted_lines_are_ignored():
    assert take_lines(b"alice\r\nbob\r\n", 1, 1024, eof=False) == [b"alice"]


def test_two_lines():
    assert take_lines(b"alice\r\nHappy\r\n", 2, 1024, eof=False) == [b"alice", b"Happy"]


def test_eof_ends_an_unended_line():
    assert take_lines(b"alice", 1, 1024, eof=True) == [b"alice"]


def test_eof_with_nothing_gives_no_lines():
    assert take_lines(b"", 1, 1024, eof=True) == []


def test_eof_after_one_of_two_lines():
    assert take_lines(b"alice\r\n", 2, 1024, eof=True) == [b"alice"]


def test_line_of_exactly_the_limit():
    assert take_lines(b"x" * 1024 + b"\r\n", 1, 1024, eof=False) == [b"x" * 1024]


def test_line_over_the_limit_is_refused_before_it_ends():
    with pytest.raises(LineTooLong):
        take_lines(b"x" * 1026, 1, 1024, eof=False)


def test_ended_line_over_the_limit_is_refused():
    with pytest.raises(LineTooLong):
        take_lines(b"x" * 1025 + b"\n", 1, 1024, eof=False)


def test_limit_plus_a_cr_waits_for_the_lf():
    assert take_lines(b"x" * 1024 + b"\r", 1, 1024, eof=False) is None


@given(st.binary(max_size=3000), st.integers(1, 2), st.booleans())
def test_any_input_gives_lines_none_or_line_too_long(buf, count, eof):
    try:
        lines = take_lines(buf, count, 1024, eof)
    except LineTooLong:
        return
    if lines is not None:
        assert len(lines) <= count
        assert all(len(line) <= 1024 and b"\n" not in line for line in lines)


#: The limits of the finger and setter services, and small ones that random input reaches.
LIMITS = st.sampled_from([1, 4, 16, MAX_QUERY_BYTES, SETTER_MAX_LINE_BYTES])


def inputs(limit):
    """Bytes for a line limit: random, made of line pieces, or a line about the limit long."""
    pieces = [b"a", b"alice", b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r\n", b"\x00", b"\xff", b" "]
    return st.one_of(
        st.binary(max_size=min(3 * limit + 10, limit + 80)),
        tokens(pieces),
        st.builds(lambda n, tail: b"x" * n + tail, st.integers(max(0, limit - 2), limit + 2),
                  tokens([b"\r", b"\n", b"x"], max_size=4)))


CASES = LIMITS.flatmap(lambda limit: st.tuples(st.just(limit), inputs(limit)))


def reference_lines(data, count, limit):
    """The first ``count`` lines of a complete request, read the slow and obvious way."""
    *ended, rest = data.split(b"\n")
    lines = ended[:count] + ([rest] if rest and len(ended) < count else [])
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return LineTooLong if any(len(line) > limit for line in lines) else lines


@given(CASES, st.integers(1, 2), st.lists(st.integers(1, 3000), max_size=8))
def test_lines_are_the_same_whole_byte_by_byte_or_cut_anywhere(case, count, cuts):
    """As the loop reads them, arriving at once or a byte at a time, and as the obvious
    reading of the whole request has them."""
    limit, data = case

    def take(buf, eof):
        return take_lines(buf, count, limit, eof)

    whole = fed(take, [data], LineTooLong)
    if whole is not LineTooLong:
        assert len(whole) <= count and all(len(line) <= limit and b"\n" not in line
                                           for line in whole)
    assert whole == reference_lines(data, count, limit)
    assert fed(take, byte_by_byte(data), LineTooLong) == whole
    assert fed(take, pieces(data, cuts), LineTooLong) == whole
