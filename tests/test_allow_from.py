"""``allow_from`` in [finger] and [web] (CONTRACT section 3): the clients it names are
served; any other is closed without an answer (an orderly end, no byte) and counted
``not_allowed``, as netkit's fingerd behind tcpd and /etc/hosts.allow. Behind a
proxy, the client the PROXY header names is the one compared.

Clients come from 127.0.0.x and ::1 on loopback."""


import pytest

from fingerd.config import parse_config
from fingerd.serving.allow import allowing
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.service import ServiceSpec
from tests.support.daemon import run_fingerd
from tests.support.markers import needs_ipv6
from tests.support.net import answer_of, connect_from, reply_from
from tests.support.polling import wait_until

REJECTED = "fingerd_connections_rejected_total"
QUERY = b"alice\r\n"
ANSWER = b"Happy and well\r\n"
PAGE = b"GET / HTTP/1.0\r\n\r\n"


def v1(client, family="TCP4", server="127.0.0.1"):
    return f"PROXY {family} {client} {server} 40000 79\r\n".encode()


def test_finger_answers_the_allowed_networks_and_closes_others_unanswered(make_daemon):
    d = make_daemon(finger__allow_from="127.0.0.2/31, 192.0.2.0/24").start()
    assert reply_from("127.0.0.2", d.finger_port, QUERY) == ANSWER
    assert reply_from("127.0.0.3", d.finger_port, QUERY) == ANSWER
    assert reply_from("127.0.0.1", d.finger_port, QUERY) == b""
    assert reply_from("127.0.0.4", d.finger_port, QUERY) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 2
    assert d.metric("fingerd_requests_total", service="finger", outcome="found") == 2
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="no slot held")


def test_every_client_is_served_by_default(make_daemon):
    d = make_daemon().start()
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.9"):
        assert reply_from(source, d.finger_port, QUERY) == ANSWER
    assert d.metric(REJECTED, reason="not_allowed") == 0


def test_the_setter_and_metrics_are_not_bound_by_finger_allow_from(make_daemon):
    d = make_daemon(finger__allow_from="127.0.0.2").start()
    assert d.setter(b"alice\r\nAway\r\n") == b"OK\r\n"
    assert reply_from("127.0.0.2", d.finger_port, QUERY) == b"Away\r\n"
    assert d.metric(REJECTED, reason="not_local") == 0


@needs_ipv6
@pytest.mark.parametrize("allow_from, served, refused", [
    ("::1", "::1", "127.0.0.1"),
    ("127.0.0.0/8", "127.0.0.1", "::1"),
    ("::/0", "::1", "127.0.0.1"),
])
def test_ipv6_clients_are_allowed_or_refused_as_ipv4_ones(make_daemon, allow_from, served,
                                                          refused):
    d = make_daemon(finger__allow_from=allow_from)
    d.listen("finger", f"127.0.0.1:{d.finger_port}", f"[::1]:{d.finger_port}").start()
    assert reply_from(served, d.finger_port, QUERY) == ANSWER
    assert reply_from(refused, d.finger_port, QUERY) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1


@pytest.fixture
def proxied(make_daemon):
    """Finger behind a proxy at 127.0.0.1, which is itself outside ``allow_from``."""
    return make_daemon(finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                       finger__allow_from="192.0.2.0/24, 127.0.0.2",
                       fingerd__max_per_source="1").start()


def test_behind_a_proxy_the_client_its_header_names_is_the_one_compared(proxied):
    d = proxied
    assert reply_from("127.0.0.1", d.finger_port, v1("192.0.2.7") + QUERY) == ANSWER
    assert reply_from("127.0.0.1", d.finger_port, v1("198.51.100.9") + QUERY) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1
    assert d.metric(REJECTED, reason="proxy") == 0
    assert d.metric("fingerd_requests_total", service="finger", outcome="found") == 1


def test_behind_a_proxy_an_ipv4_mapped_client_counts_as_its_ipv4_address(proxied):
    d = proxied
    header = v1("::ffff:127.0.0.2", "TCP6", "::1")
    assert reply_from("127.0.0.1", d.finger_port, header + QUERY) == ANSWER
    header = v1("::ffff:127.0.0.3", "TCP6", "::1")
    assert reply_from("127.0.0.1", d.finger_port, header + QUERY) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1


def test_a_header_that_keeps_the_proxys_address_is_compared_by_it(proxied):
    d = proxied
    assert reply_from("127.0.0.1", d.finger_port, b"PROXY UNKNOWN\r\n" + QUERY) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1


def test_allow_from_lets_no_one_past_proxy_from(proxied):
    """Refused for ``proxy`` (which may end in a reset, the query unread), not served."""
    d = proxied
    try:
        assert reply_from("127.0.0.2", d.finger_port, v1("192.0.2.7") + QUERY) == b""
    except ConnectionResetError:
        pass
    assert d.metric(REJECTED, reason="proxy") == 1
    assert d.metric(REJECTED, reason="not_allowed") == 0


def test_a_refused_header_sent_in_pieces_frees_the_proxys_share(proxied):
    """A header not whole at the first read counts against the proxy's address, here
    bound to one connection: a refusal must give that back."""
    d = proxied
    for client, expected in (("198.51.100.9", b""), ("192.0.2.7", ANSWER)):
        s = connect_from("127.0.0.1", d.finger_port)
        s.settimeout(10)
        for byte in v1(client):
            s.send(bytes([byte]))
        if expected:
            s.sendall(QUERY)
        assert answer_of(s) == expected, client
    assert d.metric(REJECTED, reason="not_allowed") == 1
    assert d.metric(REJECTED, reason="per_source") == 0
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="no slot held")


@pytest.fixture
def web(make_daemon, ports):
    return make_daemon(web__allow_from="127.0.0.2").listen(
        "web", f"127.0.0.1:{ports.take()}").start()


def test_the_web_directory_answers_the_allowed_and_closes_others_unanswered(web):
    d = web
    assert reply_from("127.0.0.2", d.web_port, PAGE).startswith(b"HTTP/1.1 200 ")
    assert reply_from("127.0.0.1", d.web_port, PAGE) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1
    assert reply_from("127.0.0.1", d.finger_port, QUERY) == ANSWER, "finger has its own"


def test_the_web_directory_behind_a_proxy_compares_the_client_its_header_names(
        make_daemon, ports):
    d = make_daemon(web__proxy_protocol="yes", web__proxy_from="127.0.0.1",
                    web__allow_from="192.0.2.7").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    assert reply_from("127.0.0.1", d.web_port, v1("192.0.2.7") + PAGE).startswith(
        b"HTTP/1.1 200 ")
    assert reply_from("127.0.0.1", d.web_port, v1("192.0.2.8") + PAGE) == b""
    assert d.metric(REJECTED, reason="not_allowed") == 1


def test_a_reload_changes_who_is_served(make_daemon):
    d = make_daemon(finger__allow_from="127.0.0.2").start()
    assert reply_from("127.0.0.1", d.finger_port, QUERY) == b""
    d.reconfigure(finger__allow_from="127.0.0.1").signal(1)
    wait_until(lambda: reply_from("127.0.0.1", d.finger_port, QUERY) == ANSWER,
               what="127.0.0.1 served after the reload")
    assert reply_from("127.0.0.2", d.finger_port, QUERY) == b""


@pytest.mark.parametrize("section", ["finger", "web"])
def test_an_invalid_entry_names_file_line_and_key(make_daemon, section):
    d = make_daemon()
    d.reconfigure(**{f"{section}__allow_from": "127.0.0.1, finger.example.org"})
    result = run_fingerd("-t", "-c", d.config_file)
    assert result.returncode != 0
    with open(d.config_file) as f:
        line = next(number for number, text in enumerate(f, 1)
                    if text.startswith("allow_from"))
    assert f"{d.config_file}:{line}: [{section}] allow_from: expected IP addresses or " \
           f"networks, got 'finger.example.org'" in result.stderr


def accepts(networks):
    spec = ServiceSpec("finger", object, None, ConnectionGate(1), 1.0, 1.0, lambda b, e: b)
    config = parse_config(f"[finger]\nallow_from = {networks}\n", "/f.conf")
    return allowing(spec, config.finger_allow_from).accepts


def test_the_check_itself():
    assert accepts("") is None, "empty: no check at all"
    check = accepts("192.0.2.0/24, 2001:db8::/32")
    assert check(("192.0.2.7", 1)) and check(("::ffff:192.0.2.7", 1, 0, 0))
    assert check(("2001:db8::1", 1, 0, 0)) and check(("fe80::1%lo", 1, 0, 1)) is False
    assert not check(("192.0.3.1", 1)) and not check(("::ffff:192.0.3.1", 1, 0, 0))
    assert not check(""), "a client without an address (a Unix socket) is in no network"


def test_an_ipv4_mapped_entry_holds_its_clients_however_their_address_comes():
    check = accepts("::ffff:192.0.2.0/120")
    assert check(("192.0.2.7", 1)) and check(("::ffff:192.0.2.7", 1, 0, 0))
    assert not check(("192.0.3.1", 1)) and not check(("::ffff:192.0.3.1", 1, 0, 0))
