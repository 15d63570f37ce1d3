"""The metrics endpoint's own HTTP: framing the request head and answering its line,
without sockets (the endpoint itself is tested in test_metrics)."""

import types
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from fingerd.serving import metrics_http
from fingerd.serving.lines import LineTooLong
from fingerd.serving.metrics_http import MAX_HEAD_BYTES, MetricsHandler, take_head
from tests.support.fuzzing import byte_by_byte, fed, pieces, tokens


def test_the_request_line_once_the_head_ends():
    assert take_head(b"GET /metrics HTTP/1.0\r\nHost: x\r\n", eof=False) is None
    assert take_head(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", eof=False) == \
        [b"GET /metrics HTTP/1.0"]
    assert take_head(b"GET /metrics HTTP/1.0\n\n", eof=False) == [b"GET /metrics HTTP/1.0"]


def test_a_client_that_closes_ends_the_head():
    assert take_head(b"GET /metrics HTTP/1.0\r\n", eof=True) == [b"GET /metrics HTTP/1.0"]
    assert take_head(b"", eof=True) == []


def test_a_head_longer_than_the_limit_is_refused():
    with pytest.raises(LineTooLong):
        take_head(b"GET / HTTP/1.0\r\n" + b"X: y\r\n" * MAX_HEAD_BYTES, eof=False)


def test_a_head_is_refused_by_its_length_however_it_arrives():
    """Not by how much of it a read happened to bring: a head of the limit is read,
    one byte more is refused, at once or a byte at a time."""
    line = b"GET /metrics HTTP/1.0"
    head = line + b"\r\nX: " + b"y" * (MAX_HEAD_BYTES - len(line) - 5)
    assert len(head) == MAX_HEAD_BYTES
    for data, expected in ((head + b"\r\n\r\n", [line]), (head + b"\n\n", [line]),
                           (head + b"y\r\n\r\n", LineTooLong), (head + b"y", LineTooLong)):
        assert fed(take_head, [data], LineTooLong) == expected
        assert fed(take_head, byte_by_byte(data), LineTooLong) == expected


def test_the_first_blank_line_ends_the_head_whichever_its_ending():
    data = b"\n\nGET /metrics HTTP/1.0\r\n\r\n"
    assert fed(take_head, [data], LineTooLong) == fed(take_head, byte_by_byte(data),
                                                      LineTooLong) == []


#: A limit small enough for byte-by-byte feeding of heads about that long to be quick.
SMALL_LIMIT = 64

#: Request heads: random bytes, heads made of HTTP's pieces, and heads about the limit long.
HEADS = st.one_of(
    st.binary(max_size=300),
    tokens([b"GET", b"POST", b" ", b"/metrics", b"/", b"?x", b"HTTP/1.0", b"HTTP/1.1", b"\r\n",
            b"\n", b"\r", b"Host: x", b"\r\n\r\n", b"\n\n", b"\x00", b"\xff"]),
    st.builds(lambda n, end: b"GET / HTTP/1.0\r\nX: " + b"y" * n + end,
              st.integers(SMALL_LIMIT - 24, SMALL_LIMIT - 12),
              tokens([b"\r", b"\n", b"y"], max_size=5)))


@given(HEADS, st.lists(st.integers(1, 300), max_size=6))
def test_the_head_is_the_same_whole_byte_by_byte_or_cut_anywhere(data, cuts):
    with mock.patch.object(metrics_http, "MAX_HEAD_BYTES", SMALL_LIMIT):
        whole = fed(take_head, [data], LineTooLong)
        if whole is not LineTooLong:
            assert len(whole) <= 1 and all(b"\n" not in line for line in whole)
        assert fed(take_head, byte_by_byte(data), LineTooLong) == whole
        assert fed(take_head, pieces(data, cuts), LineTooLong) == whole


def answer(line):
    server = types.SimpleNamespace(registry=CollectorRegistry())
    return MetricsHandler([line], ("127.0.0.1", 40000), server).answer


def test_a_scrape_and_what_is_not_one():
    assert answer(b"GET /metrics?x=1 HTTP/1.1").data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert answer(b"GET / HTTP/1.0").data.startswith(b"HTTP/1.0 404 ")
    assert answer(b"POST /metrics HTTP/1.0").data.startswith(b"HTTP/1.0 405 ")
    assert answer(b"GET /metrics").data.startswith(b"HTTP/1.0 400 ")


@given(st.one_of(st.binary(max_size=200),
                 tokens([b"GET", b"get", b" ", b"\t", b"/metrics", b"/", b"?", b"HTTP/", b"1.0",
                         b"\x00", b"\xff", b"\xc3\xa9"])))
def test_any_request_line_gets_a_whole_http_answer(line):
    reply = answer(line)
    head, blank, body = reply.data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    assert blank and status.split(b" ", 2)[:2] in (
        [b"HTTP/1.0", b"200"], [b"HTTP/1.0", b"400"], [b"HTTP/1.0", b"404"], [b"HTTP/1.0", b"405"])
    assert f"Content-Length: {len(body)}\r\n".encode() in head + b"\r\n"
