"""Framing of request lines."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.serving.lines import LineTooLong, take_lines


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
