"""The web directory's replies in HTTP, without sockets (serving/web.py): prepared once per
users table and request target, and answered from there byte for byte as the handler
answers them."""

import re
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import Rules
from fingerd.finger.output import Renderer
from fingerd.finger.pages import Pages
from fingerd.finger.sources import Directory, FileSource
from fingerd.finger.web import Site
from fingerd.limits import MAX_CACHED_ANSWER_BYTES
from fingerd.serving.finger import AnswerCache
from fingerd.serving.http_head import take_request
from fingerd.serving.http_response import dated, framed
from fingerd.serving.web import (
    PreparedReplies,
    WebHandler,
    busy_answer,
    internal_error,
    prepared_size,
)

CLIENT = ("127.0.0.1", 40000)
DATE = re.compile(rb"\r\nDate: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
                  rb"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n")


class Table(dict):
    """A users table that, as the store's, can be referred to weakly."""


class Store:
    def __init__(self, users):
        self.table = Table(users)


class CountingSite(Site):
    """A Site that counts the replies it makes."""

    made = 0

    def answer(self, path, query):
        self.made += 1
        return super().answer(path, query)


def prepared_site(users=None):
    store = Store(users or {"alice": "Happy and well", "bob": "Sleeping"})
    site = CountingSite(Directory([FileSource(store)]), Rules(list_users=True), Renderer(),
                        Pages("Finger directory of test"))
    memo = PreparedReplies(site, AnswerCache(partial(getattr, store, "table"),
                                             MAX_CACHED_ANSWER_BYTES, prepared_size))
    return store, site, memo


def handled(head, client, site):
    return WebHandler(head, client, site).answer


def asked(memo, site, head):
    """What the memo answers ``head`` with, the handler making what it does not."""
    return memo(head, CLIENT, lambda request, client: handled(request, client, site))


def undated(data):
    """``data`` with its Date field, the one part that changes between requests, cut out."""
    assert len(DATE.findall(data.partition(b"\r\n\r\n")[0] + b"\r\n")) <= 1
    return DATE.sub(b"\r\n", data, count=1)


def test_a_reply_is_prepared_once_per_table_and_again_for_another_table():
    store, site, memo = prepared_site()
    head = take_request(b"GET /api/users/alice HTTP/1.0\r\n\r\n", False)
    first = asked(memo, site, head)
    assert undated(asked(memo, site, head).data) == undated(first.data)
    assert site.made == 1
    store.table = Table({"alice": "Gone fishing"})
    again = asked(memo, site, head)
    assert site.made == 2 and b"Status: Gone fishing" in again.data


TARGETS = ["/", "/users/alice", "/users/carol", "/api/users/bob", "/api/users",
           "/users?name=bob", "/style.css", "/nothing"]


def tagged(site, target, if_none_match):
    """``if_none_match`` with ``tag`` replaced by the entity tag of ``target``'s answer."""
    if if_none_match is None or "tag" not in if_none_match:
        return if_none_match
    tag = re.search(rb'ETag: ("[0-9a-f]+")', handled(
        take_request(f"GET {target} HTTP/1.0\r\n\r\n".encode(), False), CLIENT, site).data)
    return if_none_match.replace("tag", tag.group(1).decode() if tag else '"x"')


@given(st.lists(st.tuples(st.sampled_from(["GET", "HEAD", "POST"]), st.sampled_from(TARGETS),
                          st.sampled_from([None, "*", '"other"', "tag", "W/tag"])),
                min_size=1, max_size=12))
def test_kept_replies_are_answered_as_the_handler_answers_them(requests):
    _store, site, memo = prepared_site()
    for method, target, if_none_match in requests:
        if_none_match = tagged(site, target, if_none_match)
        field = "" if if_none_match is None else f"If-None-Match: {if_none_match}\r\n"
        head = take_request(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{field}\r\n".encode(),
                            False)
        kept, made = asked(memo, site, head), handled(head, CLIENT, site)
        assert (kept.outcome, kept.kind, kept.name) == (made.outcome, made.kind, made.name)
        assert undated(kept.data) == undated(made.data)


def test_a_get_says_type_and_length_date_tag_caching_then_what_every_answer_says():
    _store, site, memo = prepared_site()
    data = asked(memo, site, take_request(b"GET /api/users/alice HTTP/1.0\r\n\r\n", False)).data
    head, _, body = data.partition(b"\r\n\r\n")
    date, tag = re.search(rb"\r\n(Date: [^\r]+)\r\n(ETag: [^\r]+)\r\n", data).groups()
    assert data == b"".join(framed(200, "application/json", body, (
        date.decode(), tag.decode(), "Cache-Control: max-age=10")))


def test_the_errors_of_the_head_and_other_methods_go_to_the_handler():
    _store, site, memo = prepared_site()
    for data in (b"nonsense\r\n\r\n", b"POST / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        head = take_request(data, False)
        assert undated(asked(memo, site, head).data) == \
            undated(handled(head, CLIENT, site).data)
    assert site.made == 0


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"x" * 9000 + b"\r\n\r\n",
                                  b"GET / HTTP/1.0\r\nX: a\rb\r\n\r\n"])
def test_an_error_is_dated_and_to_head_has_the_head_of_the_error_to_get(data):
    full = handled(take_request(data, False), CLIENT, None).data
    head = handled(take_request(b"HEAD" + data[3:], False), CLIENT, None).data
    assert len(DATE.findall(full)) == 1
    assert undated(head) == undated(full).partition(b"\r\n\r\n")[0] + b"\r\n\r\n"


def test_an_error_to_what_is_not_a_request_line_has_its_body():
    data = handled(take_request(b"HEAD /\r\n\r\n", False), CLIENT, None).data
    assert data.endswith(b"\r\n\r\nmalformed request line\n")


def test_busy_and_internal_errors_are_dated_and_to_head_have_no_body():
    for sent in (b"", b"GET / HT", b"HEAD / HTTP/1.1\r\n"):
        busy = busy_answer(sent)
        assert DATE.search(busy) and busy.startswith(b"HTTP/1.1 503 ")
        assert busy.endswith(b"\r\n\r\n" if sent.startswith(b"HEAD ") else
                             b"Server busy, try again later\n")
    for method in ("GET", "HEAD"):
        head = take_request(f"{method} / HTTP/1.0\r\n\r\n".encode(), False)
        error = internal_error(head).data
        assert error.startswith(b"HTTP/1.1 500 ") and DATE.search(error)
        assert error.endswith(b"\r\n\r\n" if method == "HEAD" else b"Internal error in server\n")


@pytest.mark.parametrize("status, content_type, body, headers, with_body", [
    (200, "text/html; charset=utf-8", b"<p>page</p>\n", ('ETag: "a"', "X: y"), True),
    (200, "application/json", b"{}\n", ('ETag: "a"',), False),
    (304, None, b"", ('ETag: "a"', "Cache-Control: max-age=10"), True),
    (303, "text/plain; charset=utf-8", b"", ("Location: /users/bob",), True),
    (405, "text/plain; charset=utf-8", b"Only GET\n", (), True),
])
def test_a_dated_response_has_the_date_of_its_second_first_after_type_and_length(
        status, content_type, body, headers, with_body):
    field = "Date: Sun, 06 Dec 2026 03:08:01 GMT"
    parts = framed(status, content_type, body, headers, with_body)
    assert dated(parts, clock=lambda: 1796526481.7) == \
        b"".join(framed(status, content_type, body, (field, *headers), with_body))
