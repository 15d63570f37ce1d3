"""The finger and setter services: how each frames a request and answers it."""

import ipaddress
import logging
from typing import NamedTuple, Optional

from fingerd.finger.answer import answer
from fingerd.finger.query import parse_query
from fingerd.limits import MAX_CACHED_ANSWER_BYTES, MAX_QUERY_BYTES, MAX_STATUS_BYTES
from fingerd.outcomes import REFUSED, SET_DENIED, SET_FAILED, SET_KIND, SET_LIMITED, SET_OK
from fingerd.serving.answer_cache import AnswerCache
from fingerd.serving.loop import Answer, RequestHandler, Server
from fingerd.serving.peer_owner import OwnerLookup
from fingerd.serving.requesters import Requesters
from fingerd.users.editing import StoreError
from fingerd.users.setter_request import OWN, Refused, may_set, parse_set_request

log = logging.getLogger(__name__)


class FingerHandler(RequestHandler):
    def respond(self, lines):
        server = self.server
        query = parse_query(lines[0])
        outcome, data = answer(query, server.directory, server.rules, server.renderer,
                               server.forward)
        return Answer(outcome, data, query.kind, query.user)


class FingerServer(Server):
    """The finger service: one query line, answered from the directory of users."""

    service = "finger"
    handler_class = FingerHandler
    max_line_bytes = MAX_QUERY_BYTES
    defers_accept = True

    def __init__(self, socks, context, directory, rules, renderer, forward=None,
                 lookups_block=False, users=None, proxy_from=None):
        super().__init__(socks, context)
        self.proxy_from = proxy_from
        self.directory = directory
        self.rules = rules
        self.renderer = renderer
        self.forward = forward
        self.lookups_block = lookups_block
        self._cache = AnswerCache(users, MAX_CACHED_ANSWER_BYTES) if users else None

    def answers_inline(self, lines):
        """From the users file alone, answers never wait; a forward or an account lookup
        (NSS, plan files) may, and goes to the pool."""
        return not self.lookups_block and b"@" not in lines[0]

    def respond_inline(self, lines, peer):
        """An answer from the users file alone is made once per table (``users()``, the
        store's current one) and line; only the reading thread makes those."""
        if self._cache is None:
            return self.respond(lines, peer)
        return self._cache.get(lines[0], self.respond, lines, peer)


class SetterClient(NamedTuple):
    """A setter's client: its address (``unix`` on the Unix socket) and the uid that owns
    its end, None when the kernel could not tell."""

    host: str
    port: int
    uid: Optional[int]


class SetterHandler(RequestHandler):
    """Sets a status when the policy lets this client, and says so once in the log."""

    def respond(self, lines):
        server = self.server
        client = self.client_address
        requester = server.requesters.of(client.uid)
        asker = describe(client.uid, requester)
        try:
            name, status = parse_set_request(lines)
        except Refused as exc:
            log.info("setter: refused request from %s: %s", who(client, requester), exc)
            return Answer(REFUSED, f"ERROR {exc}\r\n".encode("ascii"), SET_KIND, None, asker)
        # Root is not rationed: it may rewrite the file itself, and scripts it runs may
        # set many statuses at once.
        if server.rate_limit is not None and client.uid != 0:
            allowed, first = server.rate_limit.allow(
                client.uid if server.policy == OWN and client.uid is not None else client.host)
            if not allowed:
                if first:
                    log.warning("setter: %s sets faster than %g a second; refusing until it "
                                "slows down", who(client, requester), server.rate_limit.rate)
                return Answer(SET_LIMITED, b"ERROR too many requests\r\n", SET_KIND, name,
                              asker)
        if not may_set(server.policy, name, requester):
            log.warning("setter: denied %s setting the status of %s", who(client, requester),
                        name)
            return Answer(SET_DENIED, b"ERROR permission denied\r\n", SET_KIND, name, asker)
        try:
            server.store.set_status(name, status)
        except StoreError as exc:
            log.error("setter: request from %s failed: %s: %s", who(client, requester),
                      server.store.path, exc)
            return Answer(SET_FAILED, f"ERROR {exc}\r\n".encode("utf-8", "replace"), SET_KIND,
                          name, asker)
        log.info("setter: %s set the status of %s", who(client, requester), name)
        return Answer(SET_OK, b"OK\r\n", SET_KIND, name, asker)


def describe(uid, requester):
    """An account as the log and the access log name it: its login, else its uid."""
    if uid is None:
        return "unknown"
    if requester is not None and requester.login is not None:
        return requester.login
    return f"uid {uid}"


def who(client, requester):
    """A setter client for the log: address, uid and login."""
    if client.uid is None:
        return f"{client.host} (account unknown)"
    return f"{client.host} (uid {client.uid}, {describe(client.uid, requester)})"


class SetterServer(Server):
    """The setter service: ``user`` and ``status`` lines, from local clients only, on a
    loopback TCP port or a Unix socket. Who owns the client's end is asked of the
    kernel right after accept, while the client is surely still there."""

    service = "setter"
    handler_class = SetterHandler
    lines_per_request = 2
    max_line_bytes = max(MAX_QUERY_BYTES, MAX_STATUS_BYTES)

    def __init__(self, socks, context, store, policy=OWN, requesters=None, rate_limit=None):
        super().__init__(socks, context)
        self.store = store
        self.policy = policy
        self.requesters = requesters or Requesters()
        #: One for TCP and the Unix socket, so that one account's sets count together.
        self.rate_limit = rate_limit
        lookups = context.metrics.owner_lookups
        self._owners = OwnerLookup(lambda method: lookups.labels(method).inc())

    def accepts(self, peer):
        """Even if bound to a wildcard by mistake, answer loopback peers only. A peer on
        the Unix socket has no address (an empty one)."""
        return not peer or is_loopback(peer[0])

    def identify(self, sock, peer):
        if not peer:
            return SetterClient("unix", 0, self._owners.of_unix(sock))
        return SetterClient(peer[0], peer[1], self._owners.of_tcp(peer, sock.getsockname()))


def is_loopback(host):
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
