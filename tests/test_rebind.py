"""Binding again for a configuration read again: what stays is kept, what is new is bound,
what went is handed back, and a failure changes nothing."""

import socket

import pytest

from fingerd.config import parse_config
from fingerd.process.parent.listeners import BindError, bind_all, close_all, rebind_all


def config(finger, setter, metrics="", sock="", backlog=16):
    return parse_config(f"[fingerd]\nbacklog = {backlog}\n[finger]\nlisten = {finger}\n"
                        f"[setter]\nlisten = {setter}\nsocket = {sock}\n"
                        f"[metrics]\nlisten = {metrics}\n", "/etc/fingerd/fingerd.conf")


def port_of(sock):
    return sock.getsockname()[1]


def test_kept_addresses_keep_their_sockets_and_queued_clients(ports, tmp_path):
    a, b, c = ports.take(), ports.take(), ports.take()
    path = str(tmp_path / "setter.sock")
    old = bind_all(config(f"127.0.0.1:{a}", f"127.0.0.1:{b}", sock=path))
    waiting = socket.create_connection(("127.0.0.1", a))
    try:
        new, unused = rebind_all(config(f"127.0.0.1:{a}, 127.0.0.1:{c}", f"127.0.0.1:{b}",
                                        sock=path, backlog=32), old)
        assert new["finger"][0] is old["finger"][0], "the same socket, with its queue"
        assert port_of(new["finger"][1]) == c
        assert new["setter"][0] is old["setter"][0]
        assert new["setter"][1] is old["setter"][1] and unused == []
        conn, _ = new["finger"][0].accept()
        conn.close()
    finally:
        waiting.close()
        close_all(new)


def test_dropped_addresses_are_handed_back_and_a_service_may_take_another_ones(ports):
    a, b, c = ports.take(), ports.take(), ports.take()
    old = bind_all(config(f"127.0.0.1:{a}", f"127.0.0.1:{b}", metrics=f"127.0.0.1:{c}"))
    new, unused = rebind_all(config(f"127.0.0.1:{c}", f"127.0.0.1:{b}"), old)
    try:
        assert new["finger"][0] is old["metrics"][0]
        assert new["metrics"] == [] and unused == old["finger"]
    finally:
        close_all(new)
        for sock in unused:
            sock.close()


def test_a_failed_bind_changes_nothing(ports, tmp_path):
    a, b, c = ports.take(), ports.take(), ports.take()
    old = bind_all(config(f"127.0.0.1:{a}", f"127.0.0.1:{b}"))
    in_the_way = tmp_path / "setter.sock"
    in_the_way.write_text("not a socket")
    with pytest.raises(BindError, match="a file that is not a socket is in the way"):
        rebind_all(config(f"127.0.0.1:{a}, 127.0.0.1:{c}", f"127.0.0.1:{b}",
                          sock=str(in_the_way)), old)
    try:
        with socket.socket() as again:
            again.bind(("127.0.0.1", c))  # the socket bound for the attempt was closed
        assert in_the_way.read_text() == "not a socket"
        assert [port_of(s) for s in old["finger"] + old["setter"]] == [a, b]
    finally:
        close_all(old)
