"""Who finger and the web directory serve: ``allow_from``, as netkit's fingerd gets it
from tcpd and /etc/hosts.allow.

A service's ``accepts`` (service.py) says whether it serves a client: the
loop asks at accept, or, behind a proxy, once the PROXY header has named
the client (pending.py). A client refused, by ``allow_from`` or by the
setter's loopback rule, is closed without an answer and counted with the
service's ``refusal``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import socket
from typing import Any, Union

from fingerd.limits import DRAIN_BYTES
from fingerd.serving.proxy_header import trusted
from fingerd.serving.service import Peer, ServiceSpec

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def allowing(service: ServiceSpec, networks: tuple[Network, ...]) -> ServiceSpec:
    """``service`` serving the clients in ``networks`` only (an IPv4-mapped address as
    its IPv4 address), the others counted ``not_allowed``; every client when
    ``networks`` is empty."""
    if not networks:
        return service
    return dataclasses.replace(service, accepts=functools.partial(_within, networks))


def _within(networks: tuple[Network, ...], peer: Peer) -> bool:
    """Whether a client at ``peer`` is in ``networks``: one without an address (on a
    Unix socket) is in none."""
    return bool(peer) and trusted(peer[0], networks)


def close_unheard(sock: Any) -> None:
    """Close a refused client's connection without an answer, with an orderly end: what
    it sent is read and dropped first, since closing with input unread sends a reset."""
    try:
        sock.recv(DRAIN_BYTES, socket.MSG_DONTWAIT)
    except OSError:
        pass
    sock.close()
