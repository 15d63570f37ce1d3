"""Binding the listening sockets, before anything else runs.

Only this module binds. The servers adopt what it returns, so that a
privileged parent can bind and an unprivileged process serve.
"""

import errno
import os
import socket

UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


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
        return _needs_root(address, option, 1024)
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address} ({option}): address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address} ({option}): no such address on this machine"
    return f"cannot listen on {address} ({option}): {exc.strerror}"


def _needs_root(address, option, first_free):
    return (f"cannot listen on {address} ({option}): ports below {first_free} need root; "
            f"start as root or set {option} to a port of {first_free} or more")


def _plan(config):
    return (("finger", "[finger] listen", config.finger_listen),
            ("setter", "[setter] listen", config.setter_listen),
            ("metrics", "[metrics] listen", config.metrics_listen))


def privileged_port_problem(config):
    """Why this process may not bind a configured port, or None; checked before anything else."""
    if os.geteuid() == 0:
        return None
    try:
        with open(UNPRIVILEGED_PORT_START) as f:
            first_free = int(f.read())
    except (OSError, ValueError):
        first_free = 1024
    for _, option, addresses in _plan(config):
        for address in addresses:
            if address.port < first_free:
                return _needs_root(address, option, first_free)
    return None


def bind_all(config):
    """``{service: [socket, ...]}`` for every configured address; all or nothing."""
    bound = {}
    try:
        for service, option, addresses in _plan(config):
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
