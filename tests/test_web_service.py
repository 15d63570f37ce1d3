"""The web directory over real sockets: every row of the contract's table (section 9), the
headers every answer carries, validators, HEAD, bounds, escaping of hostile statuses, and
its metrics, access log and PROXY header."""

import json
import re
import socket
import subprocess

import pytest

from tests.support.held import held, slots_freed, while_young
from tests.support.markers import needs_tool
from tests.support.net import exchange
from tests.support.polling import during, wait_until

USERS = b"alice:Happy and well\nbob:Sleeping\n"
SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
            "connection": "close"}
#: An HTTP date (RFC 9110 5.6.7), as every answer carries it.
HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
                       r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT")


class Reply:
    """A raw HTTP reply, taken apart."""

    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.version, status, self.reason = status_line.split(" ", 2)
        self.status = int(status)
        self.headers = {}
        for field in fields:
            name, _, value = field.partition(": ")
            assert name.lower() not in self.headers, f"{name} twice"
            self.headers[name.lower()] = value

    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.text())


def request(d, path, method="GET", headers=(), version="1.1"):
    fields = "".join(f"{h}\r\n" for h in (("Host: 127.0.0.1",) if version == "1.1" else ())
                     + tuple(headers))
    return Reply(d.web(f"{method} {path} HTTP/{version}\r\n{fields}\r\n".encode()))


def get(d, path, **kw):
    return request(d, path, **kw)


def web_daemon(make, ports):
    return make(users=USERS, finger__list_users="yes", fingerd__request_timeout="1") \
        .listen("web", f"127.0.0.1:{ports.take()}").start()


@pytest.fixture(scope="module")
def web(make_shared_daemon, ports):
    """One daemon for the tests that only ask it: none of them sets a status or counts
    requests, so that each finds it as a new daemon would be."""
    return web_daemon(make_shared_daemon, ports)


@pytest.fixture
def own_web(make_daemon, ports):
    """The same daemon, of the test's own: for a test that sets statuses or counts
    requests."""
    return web_daemon(make_daemon, ports)


@pytest.fixture
def private(make_daemon, ports):
    """list_users off, the default."""
    return make_daemon(users=USERS).listen("web", f"127.0.0.1:{ports.take()}").start()


def assert_served(reply, status, content_type=None):
    assert reply.version == "HTTP/1.1" and reply.status == status, reply.raw[:300]
    for name, value in SECURITY.items():
        assert reply.headers[name] == value
    assert HTTP_DATE.fullmatch(reply.headers["date"])
    csp = reply.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    if content_type is not None:
        assert reply.headers["content-type"] == content_type
        assert int(reply.headers["content-length"]) == len(reply.body)


# The contract's table, row by row.

def test_root_lists_users_in_a_table_when_list_users_is_on(web):
    reply = get(web, "/")
    assert_served(reply, 200, "text/html; charset=utf-8")
    page = reply.text()
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert '<a href="/users/alice">alice</a></td><td>Happy and well</td>' in page
    assert '<a href="/users/bob">bob</a></td><td>Sleeping</td>' in page
    assert page.index(">alice<") < page.index(">bob<")
    assert '<form action="/users" method="get"' in page
    assert "<script" not in page


def test_root_is_a_lookup_form_when_the_list_is_private(private):
    reply = get(private, "/")
    assert_served(reply, 200, "text/html; charset=utf-8")
    assert '<label for="name">' in reply.text() and '<input id="name" name="name"' in reply.text()
    assert "alice" not in reply.text() and "bob" not in reply.text()


def test_a_users_page_shows_what_finger_answers_for_slash_w(web):
    reply = get(web, "/users/alice")
    assert_served(reply, 200, "text/html; charset=utf-8")
    finger = web.finger(b"/W alice\r\n").decode().replace("\r\n", "\n").rstrip("\n")
    assert f"<pre>{finger}</pre>" in reply.text()
    assert "<h1>alice</h1>" in reply.text()


def test_a_user_finger_does_not_know_is_a_404_page_saying_no_such_user(web):
    reply = get(web, "/users/carol")
    assert_served(reply, 404, "text/html; charset=utf-8")
    assert "<h1>No such user</h1>" in reply.text()


def test_api_user_is_json_with_the_slash_w_answer(web):
    reply = get(web, "/api/users/alice")
    assert_served(reply, 200, "application/json")
    finger = web.finger(b"/W alice\r\n").decode()
    assert reply.json() == {"user": "alice", "found": True,
                            "answer": finger.replace("\r\n", "\n").rstrip("\n")}
    assert "\r" not in reply.json()["answer"]


def test_api_user_not_found_is_a_404_json(web):
    reply = get(web, "/api/users/carol")
    assert_served(reply, 404, "application/json")
    assert reply.json() == {"user": "carol", "found": False}


def test_api_user_not_found_echoes_null_for_what_is_not_a_user_name(web):
    reply = get(web, "/api/users/%3Cscript%3E%E2%80%AE%0A")
    assert_served(reply, 404, "application/json")
    assert reply.json() == {"user": None, "found": False}
    assert reply.body == b'{"user": null, "found": false}\n'


def test_api_users_lists_in_the_order_of_the_finger_list(web):
    reply = get(web, "/api/users")
    assert_served(reply, 200, "application/json")
    assert reply.json() == {"users": [{"user": "alice", "status": "Happy and well"},
                                      {"user": "bob", "status": "Sleeping"}]}
    assert web.finger(b"\r\n") == b"alice: Happy and well\r\nbob: Sleeping\r\n"


def test_api_users_is_forbidden_when_the_list_is_private(private):
    reply = get(private, "/api/users")
    assert_served(reply, 403)
    assert "alice" not in reply.text()


def test_the_forms_target_redirects_to_the_users_page(web):
    reply = get(web, "/users?name=bob")
    assert_served(reply, 303)
    assert reply.headers["location"] == "/users/bob"
    assert get(web, "/users?name=+bob+").headers["location"] == "/users/bob"


@pytest.mark.parametrize("path", [
    "/users/-alice", "/users/alice@localhost", "/users/alice%40localhost",
    "/users/" + "a" * 33, "/users/", "/users/alice/", "/users/al%2Fice", "/users?name=a@b",
    "/users?name=", "/users", "/api/users/alice@example.org", "/api/users/", "/api",
    "/nothing", "/index.html", "/USERS/alice", "//users/alice", "/users/alice/../bob",
])
def test_invalid_names_an_at_and_other_paths_are_404(web, path):
    reply = get(web, path)
    assert_served(reply, 404)
    assert "Happy" not in reply.text() and "Sleeping" not in reply.text()


def test_an_at_is_never_forwarded(make_daemon, ports):
    d = make_daemon(users=USERS, finger__forwarding="yes").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    reply = get(d, f"/api/users/alice@127.0.0.1:{d.finger_port}")
    assert reply.status == 404 and reply.json()["found"] is False
    assert d.metric("fingerd_requests_total", service="finger", outcome="found") == 0


def test_a_percent_encoded_name_is_its_decoded_self(web):
    assert get(web, "/users/al%69ce").status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "get"])
def test_any_other_method_is_405_with_allow(web, method):
    reply = request(web, "/", method=method)
    assert_served(reply, 405)
    assert reply.headers["allow"] == "GET, HEAD"


def test_connect_to_an_authority_is_another_method_405(web):
    reply = request(web, "127.0.0.1:79", method="CONNECT")
    assert_served(reply, 405)
    assert reply.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("data", [
    b"garbage\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: user@127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.0\r\nBad header\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: a\r\n folded\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: \x1b[31m\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
])
def test_a_malformed_request_is_400(web, data):
    reply = Reply(web.web(data))
    assert_served(reply, 400, "text/plain; charset=utf-8")


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.2\r\n",                                      # a whole line, no request
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n",                          # and the head goes on
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),  # a TLS hello
])
def test_what_cannot_become_a_request_is_400_before_any_blank_line(web, data):
    """The client waits for an answer to what it sent and sends no blank line: it is
    told 400 at once, not held until request_timeout and closed unanswered."""
    reply = Reply(web.web(data, timeout=0.8))
    assert_served(reply, 400, "text/plain; charset=utf-8")
    assert reply.body == b"malformed request line\n"


def test_other_versions_are_505_before_any_blank_line(web):
    assert_served(Reply(web.web(b"GET / HTTP/2.0\r\n", timeout=0.8)), 505)


def test_a_head_the_client_ends_early_is_400_at_once(web):
    reply = Reply(web.web(b"GET / HTTP/1.0\r\nHost: x\r\n", shut_write=True, timeout=0.9))
    assert_served(reply, 400)


def test_a_client_that_sends_nothing_and_closes_gets_nothing(web):
    assert web.web(b"", shut_write=True) == b""


def test_other_versions_are_505(web):
    assert_served(Reply(web.web(b"GET / HTTP/2.0\r\n\r\n")), 505)


def test_http_1_0_is_served_without_host(web):
    reply = request(web, "/api/users/bob", version="1.0")
    assert_served(reply, 200, "application/json")


def test_a_head_over_8_kib_is_431_whether_it_arrives_at_once_or_not(web):
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"x" * 8200 + b"\r\n\r\n"
    assert_served(Reply(web.web(big)), 431)
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=5) as s:
        for start in range(0, 8300, 1000):
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"x" * 1000
                          if not start else b"x" * 1000)
            except OSError:
                break
        reply = Reply(read_all(s))
    assert_served(reply, 431)


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_request_line_over_8_kib_is_431_and_to_head_without_a_body(web, method):
    """The line never ends within the bound, but what came of it began a HEAD."""
    reply = Reply(web.web(method + b" /users/" + b"x" * 9000))
    assert_served(reply, 431)
    assert reply.body == (b"" if method == b"HEAD" else b"request head over 8 KiB\n")


def test_a_head_of_exactly_8_kib_is_served(web):
    start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    data = start + b"x" * (8192 - len(start) - 4) + b"\r\n\r\n"
    assert len(data) == 8192
    assert_served(Reply(web.web(data)), 200)


def read_all(s, limit=1 << 20):
    chunks = []
    while sum(map(len, chunks)) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_body_never_read_does_not_reset_the_answer(web):
    """The server reads the head alone; closing with the body unread would send a reset,
    which destroys the answer in flight: the service reads and drops what is there
    first, every time."""
    data = b"GET /api/users/bob HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n\r\n"
    for _ in range(20):
        reply = Reply(web.web(data + b"x" * 30000))
        assert_served(reply, 200, "application/json")
        assert reply.json()["found"] is True


def test_a_slow_sender_within_the_timeout_is_answered(web):
    data = b"GET /api/users/bob HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=5) as s:
        for i, _ in zip(range(len(data)), during(0.6, interval=0.01)):
            s.send(data[i:i + 1])
        s.sendall(data[i + 1:])
        reply = Reply(read_all(s))
    assert_served(reply, 200)
    assert reply.json()["found"] is True


def test_a_sender_too_slow_for_request_timeout_is_closed_unanswered_and_counted(web):
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        assert read_all(s) == b""
    assert web.metric("fingerd_connections_rejected_total", reason="timeout") >= 1


# What every answer carries, validators and HEAD.

def test_every_answer_carries_the_security_headers(web):
    for reply in (get(web, "/"), get(web, "/style.css"), get(web, "/users/carol"),
                  request(web, "/", method="POST"), Reply(web.web(b"x\r\n\r\n"))):
        assert_served(reply, reply.status)


def test_the_stylesheet_is_served_and_pages_hold_no_script(web):
    css = get(web, "/style.css")
    assert_served(css, 200, "text/css; charset=utf-8")
    assert "prefers-color-scheme: dark" in css.text()
    for path in ("/", "/users/alice", "/users/carol", "/nothing"):
        page = get(web, path).text()
        assert '<link rel="stylesheet" href="/style.css">' in page
        assert not re.search(r"<script|\son[a-z]+=|javascript:", page, re.I)


def test_answers_carry_an_etag_and_a_short_max_age(web):
    reply = get(web, "/api/users/alice")
    assert re.fullmatch(r'"[0-9a-f]{24}"', reply.headers["etag"])
    assert reply.headers["cache-control"] == "max-age=10"
    assert get(web, "/api/users/alice").headers["etag"] == reply.headers["etag"]
    assert get(web, "/users/alice").headers["etag"] != reply.headers["etag"]


def test_a_matching_if_none_match_gets_304_without_a_body(web):
    tag = get(web, "/users/alice").headers["etag"]
    for value in (tag, f'"x", {tag}', f"W/{tag}", "*"):
        reply = get(web, "/users/alice", headers=[f"If-None-Match: {value}"])
        assert_served(reply, 304)
        assert reply.body == b"" and reply.headers["etag"] == tag
        assert "content-length" not in reply.headers
    assert get(web, "/users/alice", headers=['If-None-Match: "other"']).status == 200


def test_a_status_set_through_the_setter_changes_the_etag(own_web):
    tag = get(own_web, "/users/alice").headers["etag"]
    assert own_web.setter(b"alice\r\nGone fishing\r\n") == b"OK\r\n"
    reply = get(own_web, "/users/alice", headers=[f"If-None-Match: {tag}"])
    assert reply.status == 200 and "Gone fishing" in reply.text()
    assert reply.headers["etag"] != tag


def test_no_404_or_error_is_ever_304(web):
    tag = get(web, "/users/carol").headers["etag"]
    assert get(web, "/users/carol", headers=[f"If-None-Match: {tag}"]).status == 404


@pytest.mark.parametrize("path", ["/", "/users/alice", "/api/users", "/users/carol",
                                  "/style.css", "/users?name=bob"])
def test_head_gets_the_head_of_get_and_no_body(web, path):
    full = get(web, path)
    head = request(web, path, method="HEAD")
    assert head.body == b""
    assert head.status == full.status
    assert {k: v for k, v in head.headers.items() if k != "date"} == \
        {k: v for k, v in full.headers.items() if k != "date"}


@pytest.mark.parametrize("data", [
    b"%s / HTTP/1.1\r\n\r\n",                                       # no Host: 400
    b"%s / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",                   # a bare CR: 400
    b"%s / HTTP/2.0\r\n\r\n",                                       # 505
    b"%s / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"x" * 9000 + b"\r\n\r\n",  # 431
])
def test_an_error_to_head_is_the_head_of_the_error_to_get(web, data):
    full, head = (Reply(web.web(data % method)) for method in (b"GET", b"HEAD"))
    assert full.status >= 400 and full.body and head.body == b""
    assert_served(full, full.status, "text/plain; charset=utf-8")
    assert_served(head, full.status)
    assert {k: v for k, v in head.headers.items() if k != "date"} == \
        {k: v for k, v in full.headers.items() if k != "date"}


def test_an_error_to_what_is_not_a_request_line_has_its_body(web):
    reply = Reply(web.web(b"HEAD /\r\n\r\n"))
    assert_served(reply, 400, "text/plain; charset=utf-8")
    assert reply.body == b"malformed request line\n"


def test_a_list_finger_cuts_says_so_in_json_as_on_the_page(make_daemon, ports):
    """Past finger's 64 KiB the list is cut: finger and the page end with a note, and
    the JSON says ``"more": true``, so that a script can tell it has not got them all."""
    many = b"".join(b"u%03d:%s\n" % (i, b"x" * 200) for i in range(400))
    d = make_daemon(users=many, finger__list_users="yes").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    listed = get(d, "/api/users")
    assert_served(listed, 200, "application/json")
    page = get(d, "/").text()
    assert "(more users not shown)" in page
    assert listed.json()["more"] is True
    assert len(listed.json()["users"]) == page.count("<tr>") - 1 < 400
    assert d.finger(b"\r\n").endswith(b"(more users not shown)\r\n")


def test_a_whole_list_has_no_more_in_json(web):
    assert get(web, "/api/users").json() == {"users": [
        {"user": "alice", "status": "Happy and well"}, {"user": "bob", "status": "Sleeping"}]}


# Hostile statuses, set through the setter as a local user would.

HOSTILE = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>',
           "it's & <b>bold</b> \"quoted\"", "rtl \u202egnp.exe\u202c and \u2028 separator"]


@pytest.mark.parametrize("status", HOSTILE)
def test_hostile_statuses_are_escaped_in_html_and_exact_in_json(own_web, status):
    assert own_web.setter(f"alice\r\n{status}\r\n".encode()) == b"OK\r\n"
    shown = own_web.finger(b"alice\r\n").decode().rstrip("\r\n")
    for path in ("/", "/users/alice"):
        page = get(own_web, path).text()
        assert "<script" not in page and "<img" not in page and "<b>" not in page
        assert shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace('"', "&quot;").replace("'", "&#x27;") in page
    api = get(own_web, "/api/users/alice")
    assert api.json()["answer"] == f"Login: alice\nStatus: {shown}"
    assert {"user": "alice", "status": shown} in get(own_web, "/api/users").json()["users"]
    assert b"<" not in api.body and b">" not in api.body
    assert "\u202e" not in api.text() and "\u2028" not in api.text()


@pytest.mark.parametrize("status", [b"\x1b[2J\x1b[31mred", b"bell\x07", b"nul\x00"])
def test_control_characters_and_ansi_escapes_never_reach_a_page(web, status):
    """The setter refuses them, so nothing changes on the web either."""
    assert web.setter(b"alice\r\n" + status + b"\r\n").startswith(b"ERROR ")
    for path in ("/users/alice", "/api/users/alice", "/api/users", "/"):
        reply = get(web, path)
        assert "Happy and well" in reply.text()
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", reply.text())


# Limits, metrics, the access log and the PROXY header.

def test_web_requests_are_counted_with_their_outcomes(own_web):
    get(own_web, "/users/alice")
    get(own_web, "/users/carol")
    get(own_web, "/")
    tag = get(own_web, "/users/alice").headers["etag"]
    get(own_web, "/users/alice", headers=[f"If-None-Match: {tag}"])
    request(own_web, "/", method="POST")
    for outcome, count in (("found", 2), ("not_found", 1), ("listed", 1), ("not_modified", 1),
                           ("bad_request", 1)):
        assert own_web.metric("fingerd_requests_total", service="web", outcome=outcome) == count
    assert own_web.metric("fingerd_request_duration_seconds_count", service="web") == 6
    assert own_web.metric("fingerd_queries_total", kind="verbose") == 0


@needs_tool("promtool", "prometheus")
def test_promtool_finds_nothing_to_report_with_web_traffic(web):
    get(web, "/")
    text = exchange(web.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n").partition(b"\r\n\r\n")[2]
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == b"", result


def test_the_access_log_has_a_line_for_each_web_request(make_daemon, ports):
    d = make_daemon(users=USERS, fingerd__access_log="yes", fingerd__log_queries="yes") \
        .listen("web", f"127.0.0.1:{ports.take()}").start()
    get(d, "/api/users/alice")
    wait_until(lambda: "access service=web peer=127.0.0.1 kind=api outcome=found" in d.log(),
               what="the access log line")
    assert 'user="alice"' in d.log()


def test_beyond_its_share_of_connections_a_client_is_told_503(make_daemon, ports):
    """While the share (1) is held by a request begun less than 1 s ago; that request,
    ended promptly, is answered."""
    d = make_daemon(users=USERS, fingerd__max_connections="4").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    replies = []

    def look(holder):
        wait_until(lambda: d.metric("fingerd_connections_active") == 1,
                   what="the first connection to be held")
        replies.append(Reply(d.web(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
        holder[0].sendall(b"Host: x\r\n\r\n")
        return replies[-1], Reply(read_all(holder[0]))

    reply, held_reply = while_young(lambda: held(d.web_port, 1, sends=b"GET / HTTP/1.1\r\n"),
                                    look, slots_freed(d))
    assert_served(reply, 503)
    assert reply.headers["retry-after"] == "1"
    assert held_reply.status == 200
    assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == \
        sum(r.status == 503 for r in replies)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_max_per_source_holds_on_the_web(make_daemon, ports):
    d = make_daemon(users=USERS, fingerd__max_per_source="1").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    with socket.create_connection(("127.0.0.1", d.web_port), timeout=5) as holder:
        holder.sendall(b"GET / HTTP/1.1\r\n")
        wait_until(lambda: d.metric("fingerd_connections_active") == 1,
                   what="the first connection to be held")
        assert Reply(d.web(b"GET / HTTP/1.0\r\n\r\n")).status == 503
    assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1


def test_behind_a_proxy_the_header_names_the_client(make_daemon, ports):
    d = make_daemon(users=USERS, fingerd__access_log="yes", web__proxy_protocol="yes") \
        .listen("web", f"127.0.0.1:{ports.take()}").start()
    reply = Reply(d.web(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 8079\r\n"
                        b"GET /api/users/bob HTTP/1.0\r\n\r\n"))
    assert reply.status == 200 and reply.json()["found"] is True
    wait_until(lambda: "access service=web peer=192.0.2.7 " in d.log(),
               what="the proxied client in the access log")
    assert d.web(b"GET /api/users/bob HTTP/1.0\r\n\r\n") == b""
    assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 1


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_client_its_proxy_names_beyond_max_per_source_is_told_503_to_head_without_body(
        make_daemon, ports, method):
    """Refused once its request's first bytes are read, after the header: a HEAD is known."""
    d = make_daemon(users=USERS, fingerd__max_per_source="1", web__proxy_protocol="yes") \
        .listen("web", f"127.0.0.1:{ports.take()}").start()
    header = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 8079\r\n"
    with socket.create_connection(("127.0.0.1", d.web_port), timeout=5) as holder:
        holder.sendall(header + b"GET / HTTP/1.1\r\n")
        wait_until(lambda: d.metric("fingerd_connections_active") == 1,
                   what="the first connection to be held")
        reply = Reply(d.web(header + method + b" / HTTP/1.0\r\n\r\n"))
    assert_served(reply, 503)
    assert reply.body == (b"" if method == b"HEAD" else b"Server busy, try again later\n")
    assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1


def test_the_web_is_off_unless_listen_is_set(daemon):
    assert "web on" not in daemon.log()
    assert daemon.metric("fingerd_requests_total", service="web", outcome="found") == 0
