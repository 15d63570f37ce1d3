"""The finger and setter services: how each frames a request and answers it."""

import ipaddress
import logging

from fingerd.finger.answer import answer
from fingerd.finger.query import parse_query
from fingerd.limits import MAX_CACHED_ANSWER_BYTES, MAX_QUERY_BYTES, MAX_STATUS_BYTES
from fingerd.outcomes import REFUSED, SET_FAILED, SET_KIND, SET_OK
from fingerd.serving.answer_cache import AnswerCache
from fingerd.serving.loop import Answer, RequestHandler, Server
from fingerd.users.editing import StoreError
from fingerd.users.setter_request import Refused, parse_set_request

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

    def __init__(self, sock, context, directory, rules, renderer, forward=None,
                 lookups_block=False, users=None):
        super().__init__(sock, context)
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

    def respond(self, lines, peer):
        """An answer from the users file alone is made once per table (``users()``, the
        store's current one) and line; only the reading thread makes those."""
        handle = super().respond
        if self._cache is None or not self.answers_inline(lines):
            return handle(lines, peer)
        return self._cache.get(lines[0], handle, lines, peer)


class SetterHandler(RequestHandler):
    def respond(self, lines):
        peer = self.client_address[0]
        try:
            name, status = parse_set_request(lines)
        except Refused as exc:
            log.info("setter: refused request from %s: %s", peer, exc)
            return Answer(REFUSED, f"ERROR {exc}\r\n".encode("ascii"), SET_KIND)
        store = self.server.store
        try:
            store.set_status(name, status)
        except StoreError as exc:
            log.error("setter: request from %s failed: %s: %s", peer, store.path, exc)
            return Answer(SET_FAILED, f"ERROR {exc}\r\n".encode("utf-8", "replace"), SET_KIND,
                          name)
        log.info("setter: %s set the status of %s", peer, name)
        return Answer(SET_OK, b"OK\r\n", SET_KIND, name)


class SetterServer(Server):
    """The setter service: ``user`` and ``status`` lines, for local clients only."""

    service = "setter"
    handler_class = SetterHandler
    lines_per_request = 2
    max_line_bytes = max(MAX_QUERY_BYTES, MAX_STATUS_BYTES)

    def __init__(self, sock, context, store):
        super().__init__(sock, context)
        self.store = store

    def accepts(self, peer):
        """Even if bound to a wildcard by mistake, answer loopback peers only."""
        address = ipaddress.ip_address(peer[0])
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback
