"""Forwarding's name lookups are bounded in time and in number."""

import socket
import threading

import pytest

from fingerd.finger.answer import parse_query
from fingerd.finger.dialer import Dialer, NoRoute
from fingerd.finger.forward import Forwarder
from tests.support.polling import wait_until


class StuckResolver:
    """A getaddrinfo that never answers a name until released, as a silent DNS server;
    address literals are answered as the real one does."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, host, port, type=0, flags=0):
        if flags & socket.AI_NUMERICHOST:
            return socket.getaddrinfo(host, port, type=type, flags=flags)
        self.calls += 1
        self.release.wait(30)
        return socket.getaddrinfo("127.0.0.1", port, type=type)


@pytest.fixture
def stuck():
    resolver = StuckResolver()
    yield resolver
    resolver.release.set()


def test_a_silent_name_server_costs_the_caller_only_its_timeout(stuck):
    dialer = Dialer(getaddrinfo=stuck)
    with pytest.raises(NoRoute, match=r"name lookup took longer than 0.2 s"):
        dialer.lookup("slow.example", 79, 0.2)
    assert stuck.calls == 1


def test_stuck_lookups_are_bounded_and_new_ones_fail_at_once(stuck):
    dialer = Dialer(max_lookups=2, getaddrinfo=stuck)
    for _ in range(2):
        with pytest.raises(NoRoute, match="took longer"):
            dialer.lookup("slow.example", 79, 0.1)
    with pytest.raises(NoRoute, match="too many name lookups in progress"):
        dialer.lookup("slow.example", 79, 5)
    assert stuck.calls == 2, "no third thread was started"
    assert dialer.lookup("127.0.0.1", 79, 1), "address literals need no lookup thread"
    stuck.release.set()
    wait_until(lambda: _answers(dialer), what="lookups possible again once the stuck ones end")


def _answers(dialer):
    try:
        return dialer.lookup("slow.example", 79, 1)
    except NoRoute:
        return None


def test_connects_by_name_and_by_address_to_a_real_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            try:
                with Dialer().connect(host, port, 5) as s:
                    assert s.getpeername() == ("127.0.0.1", port)
            except OSError as exc:
                pytest.fail(f"{host}: {exc}")
            listener.accept()[0].close()


def test_an_unknown_host_and_a_refusal_are_errors_not_hangs():
    with pytest.raises(socket.gaierror):
        Dialer().connect("no-such-host.invalid", 79, 5)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            Dialer().connect("127.0.0.1", port, 5)


def test_a_forwarded_query_behind_a_silent_name_server_gets_one_line(stuck):
    forward = Forwarder(0.2, dialer=Dialer(getaddrinfo=stuck))
    assert forward(parse_query(b"alice@slow.example")) == \
        (False, ["slow.example: name lookup took longer than 0.2 s"])
