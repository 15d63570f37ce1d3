"""The finger and setter services: what each server reads and how it answers."""

import ipaddress
import logging

from fingerd.finger import answer as finger
from fingerd.finger.query import FORWARD, LIST, USER, parse_query
from fingerd.limits import MAX_QUERY_BYTES, MAX_STATUS_BYTES
from fingerd.serving.loop import LineRequestHandler, LineServer
from fingerd.users.editing import StoreError
from fingerd.users.setter_request import Refused, parse_set_request

log = logging.getLogger(__name__)

SET_OK = "ok"
SET_REFUSED = "refused"
SET_FAILED = "failed"
SETTER_OUTCOMES = (SET_OK, SET_REFUSED, SET_FAILED)
OUTCOMES = {"finger": finger.OUTCOMES, "setter": SETTER_OUTCOMES}

#: Query kinds of the grammar, as the metrics and the access log name them.
QUERY_KIND = {USER: "user", LIST: "list", FORWARD: "forwarding"}


class FingerHandler(LineRequestHandler):
    def respond(self, lines):
        server = self.server
        query = parse_query(lines[0])
        kind = QUERY_KIND[query.kind]
        if kind == "user" and query.verbose:
            kind = "verbose"
        self.request.kind = kind
        self.request.name = query.user
        return finger.answer(query, server.directory, server.rules, server.renderer,
                             server.forward)


class FingerServer(LineServer):
    """The finger service: one query line, answered from the directory of users."""

    service = "finger"
    lines_per_request = 1
    max_line_bytes = MAX_QUERY_BYTES

    def __init__(self, sock, context, directory, rules, renderer, forward=None,
                 lookups_block=False):
        super().__init__(sock, FingerHandler, context)
        self.directory = directory
        self.rules = rules
        self.renderer = renderer
        self.forward = forward
        self.lookups_block = lookups_block

    def answers_inline(self, request):
        """From the users file alone, answers never wait; a forward or an account lookup
        (NSS, plan files) may, and goes to the pool."""
        return not self.lookups_block and b"@" not in request.lines[0]


class SetterHandler(LineRequestHandler):
    def respond(self, lines):
        peer = self.client_address[0]
        self.request.kind = "set"
        try:
            name, status = parse_set_request(lines)
            self.request.name = name
            self.server.store.set_status(name, status)
        except Refused as exc:
            log.info("setter: refused request from %s: %s", peer, exc)
            return SET_REFUSED, f"ERROR {exc}\r\n".encode("ascii")
        except StoreError as exc:
            log.error("setter: request from %s failed: %s: %s", peer, self.server.store.path,
                      exc)
            return SET_FAILED, f"ERROR {exc}\r\n".encode("utf-8", "replace")
        log.info("setter: %s set the status of %s", peer, name)
        return SET_OK, b"OK\r\n"


class SetterServer(LineServer):
    """The setter service: ``user`` and ``status`` lines, for local clients only."""

    service = "setter"
    lines_per_request = 2
    max_line_bytes = max(MAX_QUERY_BYTES, MAX_STATUS_BYTES)

    def __init__(self, sock, context, store):
        super().__init__(sock, SetterHandler, context)
        self.store = store

    def verify_request(self, request, client_address):
        """Even if bound to a wildcard by mistake, answer loopback peers only."""
        address = ipaddress.ip_address(client_address[0])
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback
