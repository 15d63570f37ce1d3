"""The metrics endpoint's answers to request lines, without sockets (the endpoint itself is
tested in test_metrics, the request head's framing in test_http_head)."""

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from fingerd.serving.http_head import take_request
from fingerd.serving.metrics_http import MetricsHandler, busy_answer
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


def undated(data):
    """``data`` without its Date field, the one part that changes between answers."""
    return re.sub(rb"\r\nDate: [^\r]*", b"", data, count=1)


@pytest.mark.parametrize("path", [b"/metrics", b"/other"])
def test_head_gets_the_head_of_get_and_no_body(path):
    got = undated(answer(b"GET " + path + b" HTTP/1.0").data)
    head, _, body = got.partition(b"\r\n\r\n")
    assert body and undated(answer(b"HEAD " + path + b" HTTP/1.0").data) == head + b"\r\n\r\n"


def test_every_answer_and_the_busy_one_carry_a_date_after_type_and_length():
    for data in (answer(b"GET /metrics HTTP/1.0").data, answer(b"POST / HTTP/1.0").data,
                 busy_answer(b"")):
        head = data.partition(b"\r\n\r\n")[0]
        assert re.fullmatch(rb"HTTP/1\.0 [0-9]{3} [^\r]+\r\nContent-Type: [^\r]+\r\n"
                            rb"Content-Length: [0-9]+\r\nDate: [A-Z][a-z]{2}, [0-9]{2} "
                            rb"[A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
                            rb"(\r\n[^\r]+)*", head), head


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


def test_the_busy_answer_to_what_began_a_head_has_no_body():
    """Refused at accept, nothing is read and the method is unknown: the body is sent."""
    assert busy_answer(b"").endswith(b"\r\n\r\nbusy\n")
    assert busy_answer(b"HEAD /metr").endswith(b"\r\n\r\n")
