"""The finger service over real loopback sockets (docs/guide.md, "What it answers")."""

import select
import socket
import time

import pytest

from tests.support.held import held, slots_freed, while_young
from tests.support.net import exchange
from tests.support.polling import wait_until


def test_known_user(shared_daemon):
    assert shared_daemon.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_verbose_known_user_gets_name_and_status(shared_daemon):
    assert shared_daemon.finger(b"/W alice\r\n") == \
        b"Login: alice\r\nStatus: Happy and well\r\n"


def test_unknown_user(shared_daemon):
    assert shared_daemon.finger(b"carol\r\n") == b"No such user\r\n"


def test_bare_lf_query(shared_daemon):
    assert shared_daemon.finger(b"alice\n") == b"Happy and well\r\n"


@pytest.mark.parametrize("query", [b"\r\n", b"/W\r\n", b"/W \r\n", b" \t\r\n"])
def test_list_denied_by_default(shared_daemon, query):
    assert shared_daemon.finger(query) == b"Finger online user list denied\r\n"


def test_list_when_allowed(make_daemon):
    d = make_daemon(finger__list_users="yes").start()
    assert d.finger(b"\r\n") == b"alice: Happy and well\r\nbob: Sleeping\r\n"


@pytest.mark.parametrize("query", [b"alice@example.org\r\n", b"@example.org\r\n",
                                   b"/W alice@a@b\r\n", b"a" + b"@localhost" * 100 + b"\r\n"])
def test_forwarding_denied_by_default(shared_daemon, query):
    assert shared_daemon.finger(query) == b"Finger forwarding service denied\r\n"


@pytest.fixture
def patient(make_daemon):
    """A daemon whose request timeout (60 s) outlasts the client's deadline (10 s):
    what the client gets before its deadline the server did not wait out."""
    return make_daemon(fingerd__request_timeout="60").start()


def test_query_ended_by_the_clients_eof_is_answered_at_once(patient):
    assert patient.finger(b"alice", shut_write=True, timeout=10) == b"Happy and well\r\n"


def test_eof_without_a_query_closes_at_once(patient):
    assert patient.finger(b"", shut_write=True, timeout=10) == b""
    assert patient.metric("fingerd_connections_rejected_total", reason="timeout") == 0


def test_only_the_first_pipelined_query_is_answered(shared_daemon):
    assert shared_daemon.finger(b"alice\r\nbob\r\n") == b"Happy and well\r\n"


@pytest.mark.parametrize("after", [4000, 5000, 60000])
def test_bytes_sent_after_the_query_do_not_destroy_its_answer(shared_daemon, after):
    """What comes with the query in one read is read with it; more is read and dropped
    before the close, which with input unread would send a reset instead of the answer."""
    assert shared_daemon.finger(b"alice\r\n" + b"x" * after) == b"Happy and well\r\n"


def test_line_longer_than_1024_bytes_is_closed_unanswered(daemon):
    assert daemon.finger(b"a" * 1025 + b"\r\n") == b""
    assert daemon.metric("fingerd_connections_rejected_total", reason="line_too_long") == 1


def test_line_of_1024_bytes_is_answered(shared_daemon):
    assert shared_daemon.finger(b"a" * 1024 + b"\r\n") == b"No such user\r\n"


def test_endless_line_is_cut_off(shared_daemon):
    with socket.create_connection(("127.0.0.1", shared_daemon.finger_port), timeout=5) as s:
        sent = 0
        try:
            for _ in range(64):
                sent += s.send(b"x" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            pass
        wait_until(lambda: closed_by_server(s), what="the server to close", timeout=5)


def closed_by_server(s):
    """True when the server has closed: EOF, or a reset for the bytes it never read."""
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_silent_client_is_closed_after_request_timeout(daemon):
    with socket.create_connection(("127.0.0.1", daemon.finger_port), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started >= 2.5
    assert daemon.metric("fingerd_connections_rejected_total", reason="timeout") == 1


def test_request_timeout_is_a_deadline_not_a_per_read_timeout(daemon):
    """A client that sends a byte every half second is never silent for the 3 s
    request timeout, and is cut off all the same: the timeout runs from the accept."""
    with socket.create_connection(("127.0.0.1", daemon.finger_port), timeout=10) as s:
        for _ in range(20):  # ten seconds of bytes, over three times the timeout
            if closed_within(s, 0.5):
                break
            try:
                s.send(b"a")
            except OSError:
                break
        else:
            pytest.fail("a client sending a byte every 0.5 s was never cut off")
    assert daemon.metric("fingerd_connections_rejected_total", reason="timeout") == 1


def closed_within(s, seconds):
    """True when the server closes ``s`` within ``seconds``; it sends nothing before."""
    readable, _, _ = select.select([s], [], [], seconds)
    return bool(readable) and closed_by_server(s)


def test_connections_beyond_max_connections_are_told_busy(make_daemon):
    """While finger's share (3) is held by queries begun less than 1 s ago: none of them
    may be shed to make room yet."""
    d = make_daemon(fingerd__max_connections="4").start()
    told = []

    def look(_held):
        wait_until(lambda: d.metric("fingerd_connections_active") == 3, what="3 active")
        told.append(d.finger(b"alice\r\n"))
        return told[-1]

    assert while_young(lambda: held(d.finger_port, 3, sends=b"al"), look, slots_freed(d)) == \
        b"Server busy, try again later\r\n"
    assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == \
        told.count(b"Server busy, try again later\r\n")
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="slots freed")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_status_is_filtered_before_the_wire(make_daemon):
    d = make_daemon(users="alice:evil\u202egnp.exe\u2066\n".encode()).start()
    assert d.finger(b"alice\r\n") == b"evilgnp.exe\r\n"


def test_a_replacement_with_nothing_after_its_arrow_removes_its_text(make_daemon):
    """``OLD =>`` was refused (expected OLD => NEW, got 'OLD =>': the blank after the
    arrow is stripped as the line is read), so no rule could remove a word."""
    d = make_daemon(users=b"alice:Happy and well!!!\n", output__replace="!!! =>").start()
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_requests_are_counted_by_outcome(daemon):
    daemon.finger(b"alice\r\n")
    daemon.finger(b"nobody\r\n")
    daemon.finger(b"\r\n")
    assert daemon.metric("fingerd_requests_total", service="finger", outcome="found") == 1
    assert daemon.metric("fingerd_requests_total", service="finger", outcome="not_found") == 1
    assert daemon.metric("fingerd_requests_total", service="finger", outcome="refused") == 1
    assert daemon.metric("fingerd_request_duration_seconds_count", service="finger") == 3


def test_ipv6_listener(make_daemon):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    d = make_daemon()
    port = d.finger_port
    d.listen("finger", f"127.0.0.1:{port}", f"[::1]:{port}").start()
    assert exchange(port, b"alice\r\n", host="::1") == b"Happy and well\r\n"
    assert exchange(port, b"alice\r\n") == b"Happy and well\r\n"
