"""The metrics endpoint's answers to request lines, without sockets (the endpoint itself is
tested in test_metrics, the request head's framing in test_http_head)."""

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from fingerd.serving.http_head import take_request
from fingerd.serving.metrics_http import MetricsHandler
from tests.support.fuzzing import tokens


def registry():
    """A registry with one sample, so that a scrape has a body."""
    made = CollectorRegistry()
    Counter("scrapes_seen", "A counter to scrape.", registry=made).inc()
    return made


def answer(line):
    """What the endpoint answers a request of this line alone, as the loop frames it."""
    head = take_request(line + b"\r\n\r\n", eof=True)
    if head == []:
        return None  # nothing sent: the loop closes without asking the handler
    return MetricsHandler(head, ("127.0.0.1", 40000), registry()).answer


def test_a_scrape_and_what_is_not_one():
    assert answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x").data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert answer(b"GET / HTTP/1.0").data.startswith(b"HTTP/1.0 404 ")
    assert answer(b"POST /metrics HTTP/1.0").data.startswith(b"HTTP/1.0 405 ")
    assert answer(b"GET /metrics").data.startswith(b"HTTP/1.0 400 ")


def test_other_methods_are_told_which_are_allowed():
    for method in (b"POST", b"OPTIONS", b"get"):
        head = answer(method + b" /metrics HTTP/1.0").data.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.0 405 ") and b"\r\nAllow: GET, HEAD\r\n" in head + b"\r\n"


@pytest.mark.parametrize("path", [b"/metrics", b"/other"])
def test_head_gets_the_head_of_get_and_no_body(path):
    got = answer(b"GET " + path + b" HTTP/1.0").data
    head, _, body = got.partition(b"\r\n\r\n")
    assert body and answer(b"HEAD " + path + b" HTTP/1.0").data == head + b"\r\n\r\n"


@given(st.one_of(st.binary(max_size=200),
                 tokens([b"GET", b"get", b"HEAD", b" ", b"\t", b"/metrics", b"/", b"?", b"HTTP/",
                         b"1.0", b"2.0", b"\x00", b"\xff", b"\xc3\xa9"])))
def test_any_request_line_gets_a_whole_http_answer(line):
    reply = answer(line)
    assume(reply is not None)
    head, blank, body = reply.data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    assert blank and status.split(b" ", 2)[:2] in (
        [b"HTTP/1.0", b"200"], [b"HTTP/1.0", b"400"], [b"HTTP/1.0", b"404"], [b"HTTP/1.0", b"405"],
        [b"HTTP/1.0", b"505"])
    length = int(re.search(rb"\r\nContent-Length: ([0-9]+)\r\n", head + b"\r\n").group(1))
    assert len(body) == (0 if asks_head(line) else length)


def asks_head(line):
    """Whether the request of this line alone was read as a HEAD, served or refused."""
    return take_request(line + b"\r\n\r\n", eof=True).method == "HEAD"


def test_an_error_to_head_has_no_body():
    for line in (b"HEAD /metrics HTTP/2.0", b"HEAD /metrics HTTP/1.1"):
        got = answer(line).data
        assert got.startswith((b"HTTP/1.0 505 ", b"HTTP/1.0 400 ")) and got.endswith(b"\r\n\r\n")
