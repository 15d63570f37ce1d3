"""The finger service: one query line, answered from the directory of users.

An answer from the users file alone never waits, so it is made on the
reading thread, and once per table and query line (AnswerCache); a forward
or an account lookup (NSS, plan files) may wait, and goes to the pool.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fingerd.finger.answer import Rules, answer, parse_query
from fingerd.finger.output import Renderer
from fingerd.limits import MAX_CACHED_ANSWER_BYTES, MAX_QUERY_BYTES
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.lines import take_lines
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import INTERNAL_ERROR, Answer, ServiceSpec, never

Lines = list[bytes]

#: "@" as a byte: ``in`` finds an int in bytes at once, where a bytes operand is
#: first tried as an int, which raises and clears a TypeError each time.
_AT = ord("@")


@dataclass(frozen=True)
class FingerNeeds:
    """What a finger query is answered with: where users come from, the operator's rules,
    the renderer of lines to bytes, and the forwarder (None when forwarding is off)."""

    directory: Any
    rules: Rules
    renderer: Renderer
    forward: Callable[..., Any] | None = None


class FingerHandler(RequestHandler):
    def respond(self, lines: Lines, needs: FingerNeeds) -> Answer:
        query = parse_query(lines[0])
        outcome, data = answer(query, needs.directory, needs.rules, needs.renderer,
                               needs.forward)
        return Answer(outcome, data, query.kind, query.user)


def take_query(buf: bytes, eof: bool) -> Lines | None:
    """A finger request: one line of at most MAX_QUERY_BYTES."""
    return take_lines(buf, 1, MAX_QUERY_BYTES, eof)


def asks_another_host(lines: Lines) -> bool:
    """Whether the query is to be forwarded (with forwarding on): its answer waits on
    another server for up to ``forward_timeout``."""
    return _AT in lines[0]


def from_users_file(lines: Lines) -> bool:
    """Whether the query asks no other host: then, from the users file alone, its
    answer never waits."""
    return _AT not in lines[0]


def names_a_user_of(users: Callable[[], Any]) -> Callable[[Lines], bool]:
    """With the system's accounts, whose lookups may block: whether a query asks no other
    host and names a user of the users file (``users()``, the current table), which
    wins over an account of the same name, so that its answer never waits, whatever
    NSS, home directories or forwards hold the pool with."""
    def from_the_table(lines: Lines) -> bool:
        return _AT not in lines[0] and parse_query(lines[0]).user in users()
    return from_the_table


def internal_error(lines: Lines) -> Answer:
    """``internal_error`` of finger: the line, with the query's kind, so that a query
    answered so is counted among the queries read (fingerd_queries_total)."""
    query = parse_query(lines[0])
    return INTERNAL_ERROR._replace(kind=query.kind, name=query.user)


def finger_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                   needs: FingerNeeds, lookups_block: bool = False,
                   users: Callable[[], Any] | None = None,
                   proxy_from: tuple | None = None) -> ServiceSpec:
    """The finger service. With ``lookups_block`` (the system's accounts), only answers
    for users of the users file are made on the reading thread; ``users()``, the store's
    current table, keys the answer cache."""
    cache = AnswerCache(users, MAX_CACHED_ANSWER_BYTES) if users else None
    inline: Callable[[Lines], bool] = from_users_file
    if lookups_block:
        inline = names_a_user_of(users) if users is not None else never
    return ServiceSpec(
        "finger", FingerHandler, needs, gate, request_timeout, first_byte_timeout,
        take_query, answers_inline=inline,
        waits_outside=never if needs.forward is None else asks_another_host,
        memo=cache.answer if cache is not None else None, defers_accept=True,
        internal_error=internal_error,
        proxy_from=proxy_from)


def _no_table() -> None:
    return None


def _answer_size(line: bytes, made: Answer) -> int:
    return len(line) + len(made.data)


class AnswerCache:
    """Answers made from the table ``current_table()`` returns, by query line (or, for
    the web directory, by request target, its sizes told by ``size_of``).

    A finger answer from the users file alone is the same for every client
    until the table changes; rendering it again for each query is most of
    the Python time a query costs, and making a web reply most of a web
    request's. Owned by one thread (a loop's reading
    thread), so it has no lock. Bounded: past ``limit`` bytes of lines and
    answers it starts again empty, so a client asking for ever new names
    costs a lookup each, as without a cache, and never memory. It holds the
    table only weakly, so a replaced table is freed as if the cache did not
    exist.
    """

    def __init__(self, current_table: Callable[[], Any], limit: int,
                 size_of: Callable[[Any, Any], int] = _answer_size) -> None:
        self._current = current_table
        self._size_of = size_of
        self._limit = limit
        self._table: Callable[[], Any] = _no_table
        self._answers: dict[Any, Any] = {}
        self._size = 0

    def answer(self, lines: Lines, client: Any,
               make: Callable[[Lines, Any], Answer]) -> Answer:
        """The answer to a query: the service's memo."""
        return self.get(lines[0], make, lines, client)

    def get(self, line: Any, make: Callable[..., Any], *args: Any) -> Any:
        """The answer to ``line`` (any key: the web's keys are request targets): one made
        from the current table, or ``make(*args)``."""
        table = self._current()
        if self._table() is not table:
            self._forget(table)
        made = self._answers.get(line)
        if made is None:
            made = make(*args)
            if self._current() is table:
                self._keep(line, made)
        return made

    def _forget(self, table: Any) -> None:
        self._table = weakref.ref(table)
        self._answers = {}
        self._size = 0

    def _keep(self, line: Any, made: Any) -> None:
        size = self._size_of(line, made)
        if self._size + size > self._limit:
            self._answers = {}
            self._size = 0
        self._answers[line] = made
        self._size += size
