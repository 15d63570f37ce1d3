"""The setter service: ``user`` and ``status`` lines, from local clients only, on a
loopback TCP port or a Unix socket.

Who owns the client's end is asked of the kernel right after accept, while
the client is surely still there; the account database then gives that uid's
login and admin rights, and the policy decides what the account may set.
"""

from __future__ import annotations

import grp
import ipaddress
import logging
import os
import pwd
from _socket import socket as RawSocket
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fingerd.finger.bounded import BoundedCalls, Unfinished
from fingerd.limits import MAX_QUERY_BYTES, MAX_STATUS_BYTES
from fingerd.metrics import Metrics
from fingerd.outcomes import (
    REFUSED,
    REJECT_NOT_LOCAL,
    SET_DENIED,
    SET_FAILED,
    SET_KIND,
    SET_LIMITED,
    SET_OK,
)
from fingerd.serving.gate import ConnectionGate, Source, source_of
from fingerd.serving.lines import LineTooLong, take_lines
from fingerd.serving.loop import RequestHandler
from fingerd.serving.peer_owner import OwnerLookup
from fingerd.serving.service import Answer, Peer, ServiceSpec
from fingerd.token_bucket import RateLimit
from fingerd.users.editing import CHANGE, OutcomeUnknown, StoreError
from fingerd.users.setter_request import (
    OWN,
    Refused,
    Requester,
    may_set,
    parse_set_request,
)

log = logging.getLogger(__name__)

#: A set request's framing: a ``user`` line and a ``status`` line.
SETTER_LINES = 2
SETTER_MAX_LINE_BYTES = max(MAX_QUERY_BYTES, MAX_STATUS_BYTES)


class SetterClient(NamedTuple):
    """A setter's client: its address (``unix`` on the Unix socket) and the uid that owns
    its end, None when the kernel could not tell."""

    host: str
    port: int
    uid: int | None


class Requesters:
    """Turns the uid that owns a client's end into a Requester: its login and admin rights.

    ``admin_group`` is resolved once, at startup (a group that does not
    exist is a configuration error); membership, primary or supplementary,
    is looked up at each request, so a change to /etc/group needs no restart.
    A lookup behind a hung NSS (LDAP) is waited for at most ``timeout`` seconds,
    and at most LOOKUPS run at once (bounded.py): it would hold its pool thread,
    and with it the sets and forwards behind, for good.
    """

    #: Account lookups for sets running at once, hung ones included.
    LOOKUPS = 2

    def __init__(self, admin_group: str = "", timeout: float = 10.0) -> None:
        self.admin_gid = grp.getgrnam(admin_group).gr_gid if admin_group else None
        self.timeout = timeout
        self._calls = BoundedCalls(self.LOOKUPS, "account lookup")

    def of(self, uid: int | None) -> Requester | None:
        """The Requester for ``uid``; None when the uid is None (not known). Raises
        Unfinished when the account database does not answer in time."""
        if uid is None:
            return None
        return self._calls.call(self.timeout, self._looked_up, uid)

    def _looked_up(self, uid: int) -> Requester:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return Requester(uid, None)
        admin = (self.admin_gid is not None
                 and self.admin_gid in os.getgrouplist(entry.pw_name, entry.pw_gid))
        return Requester(uid, entry.pw_name, admin)


@dataclass(frozen=True)
class SetterNeeds:
    """What a set is answered with: the store, the policy, the accounts by uid, and the
    rate limit (None: none), one for TCP and the Unix socket so that one account's sets
    count together."""

    store: Any
    policy: str = OWN
    requesters: Requesters = field(default_factory=Requesters)
    rate_limit: RateLimit | None = None


class SetterHandler(RequestHandler):
    """Sets a status when the policy lets this client; whoever writes it logs it
    (the root parent, for the users file)."""

    def respond(self, lines: list[bytes], needs: SetterNeeds) -> Answer:
        client = self.client_address
        try:
            requester = needs.requesters.of(client.uid)
        except Unfinished as exc:
            log.error("setter: request from %s (uid %s): %s", client.host, client.uid, exc)
            return Answer(SET_FAILED, b"ERROR account lookup failed\r\n", SET_KIND, None,
                          describe(client.uid, None))
        asker = describe(client.uid, requester)
        request: tuple[str, str] | Refused
        try:
            request = parse_set_request(lines)
        except Refused as exc:
            request = exc
        name = None if isinstance(request, Refused) else request[0]
        # Root is not rationed: it may rewrite the file itself, and scripts it runs may
        # set many statuses at once. Under any policy each account the kernel names has
        # its own ration; only a client whose account cannot be told is rationed by address.
        # A request refused as invalid takes from it too: each is logged, and a flood of
        # them would crowd other accounts' sets out of the worker's share of the log.
        if needs.rate_limit is not None and client.uid != 0:
            allowed, first = needs.rate_limit.allow(
                client.uid if client.uid is not None else client.host)
            if not allowed:
                if first:
                    log.warning("setter: %s sets faster than %g a second; refusing until it "
                                "slows down", who(client, requester), needs.rate_limit.rate)
                return Answer(SET_LIMITED, b"ERROR too many requests\r\n", SET_KIND, name,
                              asker)
        if isinstance(request, Refused):
            log.info("setter: refused request from %s: %s", who(client, requester), request)
            return Answer(REFUSED, f"ERROR {request}\r\n".encode("ascii"), SET_KIND, None,
                          asker)
        name, status = request
        if not may_set(needs.policy, name, requester):
            log.warning("setter: denied %s setting the status of %s", who(client, requester),
                        name)
            return Answer(SET_DENIED, b"ERROR permission denied\r\n", SET_KIND, name, asker)
        try:
            needs.store.set_status(name, status, who(client, requester))
        except StoreError as exc:
            log.error("setter: request from %s failed: %s: %s", who(client, requester),
                      needs.store.path, exc)
            return Answer(SET_FAILED, f"ERROR {exc}\r\n".encode("utf-8", "replace"), SET_KIND,
                          name, asker)
        except OutcomeUnknown as exc:
            # ERROR would say that nothing changed: the client is told nothing instead.
            log.error("setter: request from %s: %s: %s; whether the status of %s was "
                      "written is unknown, and the client is told nothing",
                      who(client, requester), needs.store.path, exc, name, extra=CHANGE)
            return Answer(SET_FAILED, b"", SET_KIND, name, asker)
        return Answer(SET_OK, b"OK\r\n", SET_KIND, name, asker)


def describe(uid: int | None, requester: Requester | None) -> str:
    """An account as the log and the access log name it: its login, else its uid."""
    if uid is None:
        return "unknown"
    if requester is not None and requester.login is not None:
        return requester.login
    return f"uid {uid}"


def who(client: SetterClient, requester: Requester | None) -> str:
    """A setter client for the log: address, uid and login."""
    if client.uid is None:
        return f"{client.host} (account unknown)"
    return f"{client.host} (uid {client.uid}, {describe(client.uid, requester)})"


def take_set_request(buf: bytes, eof: bool) -> list[bytes] | None:
    """The request's two lines once ``buf`` holds them, else None (take_lines).

    A line longer than SETTER_MAX_LINE_BYTES is a request too, taken as it stands
    once it is past the limit, its line cut one byte beyond: the handler refuses
    it with ERROR for the name or the status it cannot be, as it refuses a status
    of 257 bytes, instead of the connection closing unanswered.
    """
    try:
        return take_lines(buf, SETTER_LINES, SETTER_MAX_LINE_BYTES, eof)
    except LineTooLong:
        name, ended, rest = buf.partition(b"\n")
        name = name.removesuffix(b"\r")
        if not ended or len(name) > SETTER_MAX_LINE_BYTES:
            return [name[:SETTER_MAX_LINE_BYTES + 1], b""]
        return [name, rest.partition(b"\n")[0][:SETTER_MAX_LINE_BYTES + 1]]


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def local_only(peer: Peer) -> bool:
    """Even if bound to a wildcard by mistake, answer loopback peers only. A peer on
    the Unix socket has no address (an empty one)."""
    return not peer or is_loopback(peer[0])


class ClientOwners:
    """Identifies a setter client by the account that owns its end of the connection."""

    def __init__(self, metrics: Metrics) -> None:
        lookups = metrics.owner_lookups
        self._owners = OwnerLookup(lambda method: lookups.labels(method).inc())

    def identify(self, sock: RawSocket, peer: Peer) -> SetterClient:
        if not peer:
            return SetterClient("unix", 0, self._owners.of_unix(sock))
        return SetterClient(peer[0], peer[1], self._owners.of_tcp(peer, sock.getsockname()))


def counted_as(client: SetterClient) -> Source:
    """What ``max_per_source`` counts a setter client against: the account the kernel
    names, so that one local account holding connections shuts no other out (every
    local client has a loopback address, or none); its address where it cannot be
    told."""
    return f"uid {client.uid}" if client.uid is not None else source_of(client.host)


def waits_on_the_parent(_request: Any) -> bool:
    """``waits_outside`` of the setter: every set waits on the parent's write of the
    users file (or on Redis)."""
    return True


def setter_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                   needs: SetterNeeds, metrics: Metrics) -> ServiceSpec:
    """The setter service; every set goes to the pool, as slow: it waits on the parent's
    write (or on Redis), one set at a time, for up to 10 s."""
    return ServiceSpec("setter", SetterHandler, needs, gate, request_timeout,
                       first_byte_timeout, take_set_request, waits_outside=waits_on_the_parent,
                       accepts=local_only,
                       refusal=REJECT_NOT_LOCAL,
                       identify=ClientOwners(metrics).identify, counted_as=counted_as,
                       lingers=True)
