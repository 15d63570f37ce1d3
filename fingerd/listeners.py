"""Binding the listening sockets, before anything else runs.

Only this module binds. The servers adopt what it returns, so that a
privileged parent can bind and an unprivileged process serve.
"""

import errno
import socket


class BindError(OSError):
    """A listening socket could not be made; the message is one line for the operator."""


def bind(address, backlog, option):
    """A listening TCP socket on ``address``; ``option`` names the setting, for errors."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(_explain(exc, address, option)) from None
    return sock


def _explain(exc, address, option):
    if exc.errno == errno.EACCES and address.port < 1024:
        return (f"cannot listen on {address} ({option}): ports below 1024 need root; "
                f"start as root or set {option} to a port of 1024 or more")
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address} ({option}): address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address} ({option}): no such address on this machine"
    return f"cannot listen on {address} ({option}): {exc.strerror}"


def bind_all(config):
    """``{service: [socket, ...]}`` for every configured address; all or nothing."""
    plan = (("finger", "[finger] listen", config.finger_listen),
            ("setter", "[setter] listen", config.setter_listen),
            ("metrics", "[metrics] listen", config.metrics_listen))
    bound = {}
    try:
        for service, option, addresses in plan:
            bound[service] = []
            for address in addresses:
                bound[service].append(bind(address, config.backlog, option))
    except BindError:
        close_all(bound)
        raise
    return bound


def close_all(bound):
    for socks in bound.values():
        for sock in socks:
            sock.close()
