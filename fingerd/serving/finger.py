"""The finger service: one query line, answered from the directory of users.

An answer from the users file alone never waits, so it is made on the
reading thread, and once per table and query line (AnswerCache); a forward
or an account lookup (NSS, plan files) may wait, and goes to the pool. With
the system's accounts, a query is parsed as it is taken (CheckedQuery), since
its name decides which thread answers it.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from fingerd.finger.answer import Query, Rules, answer, parse_query
from fingerd.finger.output import Renderer
from fingerd.finger.sources import Directory, FileSource
from fingerd.limits import MAX_CACHED_ANSWER_BYTES, MAX_QUERY_BYTES
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.lines import take_lines
from fingerd.serving.loop import RequestHandler
from fingerd.serving.service import INTERNAL_ERROR, Answer, ServiceSpec, TakeRequest, never

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
    #: The forwards read and not yet answered, at most half of finger's share of
    #: ``max_connections`` (finger_service makes it when forwarding is on): each may hold
    #: its connection's slot for ``forward_timeout``, and without a bound forwards to
    #: silent hosts filled the share, so that local queries were answered ``Server busy``.
    #: The reading thread takes a slot as it takes the query; the pool thread that
    #: answers it hands it back. A forward beyond them is answered at once, not asked.
    forwards: ConnectionGate | None = None


def too_many_forwards(query: Query) -> tuple[bool, list[str]]:
    """The Forward of a query beyond ``FingerNeeds.forwards``: one line, nothing asked."""
    return False, [f"{query.hosts[-1]}: not asked, too many forwards in progress"]


class CheckedQuery(NamedTuple):
    """A query as finger takes it with the system's accounts, whose lookups may block:
    parsed once, as it is taken, and checked against the users table of that moment.

    ``table`` is that table when it has the user (who wins over an account of
    the same name) and no other host is asked: the answer is then made from
    it alone, on the reading thread, so that a reload meanwhile can neither
    change it nor send it to an account lookup there. Else None, and the pool
    answers from the directory (a table held there could not be freed
    gradually once replaced).
    """

    line: bytes
    query: Query
    table: Mapping[str, str] | None
    #: When a query to be forwarded was read (time.monotonic), else None.
    read_at: float | None = None
    #: Whether a query to be forwarded has a slot among the forwards (else it is not asked).
    counted: bool = False


class ForwardLines(list[bytes]):
    """The lines of a query to be forwarded, with when it was read (time.monotonic):
    its ``forward_timeout`` counts from then, its wait for a pool thread included;
    and whether it has a slot among the forwards (else it is answered without asking)."""

    __slots__ = ("counted", "read_at")

    def __init__(self, lines: Lines, read_at: float, counted: bool) -> None:
        super().__init__(lines)
        self.read_at = read_at
        self.counted = counted


class _Kept(NamedTuple):
    """One table as a store that never replaces it, for sources.FileSource."""

    table: Mapping[str, str]


def forward_answered(query: Query, directory: Any, needs: FingerNeeds, read_at: float,
                     counted: bool) -> Answer:
    """``answered`` for a query to be forwarded: with its slot in ``needs.forwards``
    (handed back here, whatever happens), or answered without asking."""
    if not counted:
        return answered(query, directory, replace(needs, forward=too_many_forwards))
    try:
        return answered(query, directory, needs, read_at)
    finally:
        if needs.forwards is not None:
            needs.forwards.hand_back(None)


def answered(query: Query, directory: Any, needs: FingerNeeds,
             read_at: float | None = None) -> Answer:
    """The Answer to ``query`` from ``directory`` under ``needs``' rules; a forward counts
    its time from ``read_at`` when given."""
    forward = needs.forward
    if read_at is not None and forward is not None:
        forward = functools.partial(forward, read_at=read_at)
    outcome, data = answer(query, directory, needs.rules, needs.renderer, forward)
    return Answer(outcome, data, query.kind, query.user)


class FingerHandler(RequestHandler):
    def respond(self, lines: Lines, needs: FingerNeeds) -> Answer:
        if lines.__class__ is ForwardLines:
            return forward_answered(parse_query(lines[0]), needs.directory, needs,
                                    lines.read_at, lines.counted)
        return answered(parse_query(lines[0]), needs.directory, needs)


class CheckedQueryHandler(RequestHandler):
    """FingerHandler of a CheckedQuery: from its table alone when it has one."""

    def respond(self, checked: CheckedQuery, needs: FingerNeeds) -> Answer:
        table = checked.table
        directory = needs.directory if table is None else Directory((FileSource(_Kept(table)),))
        if checked.read_at is not None and needs.forwards is not None:
            return forward_answered(checked.query, directory, needs, checked.read_at,
                                    checked.counted)
        return answered(checked.query, directory, needs)


def take_query(buf: bytes, eof: bool) -> Lines | None:
    """A finger request: one line of at most MAX_QUERY_BYTES."""
    return take_lines(buf, 1, MAX_QUERY_BYTES, eof)


def taking_forwards(forwards: ConnectionGate) -> TakeRequest:
    """``take_query`` with forwarding on: a query naming a host comes as ForwardLines,
    with a slot in ``forwards`` if one is free."""
    def take(buf: bytes, eof: bool) -> Lines | None:
        lines = take_lines(buf, 1, MAX_QUERY_BYTES, eof)
        if lines and _AT in lines[0]:
            return ForwardLines(lines, time.monotonic(), forwards.enter(None) is None)
        return lines
    return take


def asks_another_host(lines: Lines) -> bool:
    """Whether the query is to be forwarded (with forwarding on): its answer waits on
    another server for up to ``forward_timeout``. One without a slot among the
    forwards does not."""
    return isinstance(lines, ForwardLines) and lines.counted


def from_users_file(lines: Lines) -> bool:
    """Whether the query asks no other host: then, from the users file alone, its
    answer never waits."""
    return _AT not in lines[0]


def checking_queries(users: Callable[[], Any], forwards: ConnectionGate | None
                     ) -> TakeRequest:
    """``take_request`` of finger with the system's accounts: ``take_query``'s line as a
    CheckedQuery, checked against ``users()``, the current table; one to be forwarded
    with a slot in ``forwards`` if one is free (None: forwarding is off)."""
    def take(buf: bytes, eof: bool) -> CheckedQuery | Lines | None:
        lines = take_lines(buf, 1, MAX_QUERY_BYTES, eof)
        if not lines:
            return lines
        query, table = parse_query(lines[0]), users()
        if not query.hosts:
            return CheckedQuery(lines[0], query, table if query.user in table else None)
        if forwards is None:  # refused
            return CheckedQuery(lines[0], query, None)
        return CheckedQuery(lines[0], query, None, time.monotonic(),
                            forwards.enter(None) is None)
    return take


def in_its_table(checked: CheckedQuery) -> bool:
    """Whether the users file answers the query, so that its answer never waits, whatever
    NSS, home directories or forwards hold the pool with."""
    return checked.table is not None


def forwarded(checked: CheckedQuery) -> bool:
    """``asks_another_host`` of a CheckedQuery: whether it is to be forwarded."""
    return checked.counted


def internal_error(lines: Lines) -> Answer:
    """``internal_error`` of finger: the line, with the query's kind, so that a query
    answered so is counted among the queries read (fingerd_queries_total)."""
    return _internal_error_to(parse_query(lines[0]))


def checked_internal_error(checked: CheckedQuery) -> Answer:
    """``internal_error`` of finger with the system's accounts."""
    return _internal_error_to(checked.query)


def _internal_error_to(query: Query) -> Answer:
    return INTERNAL_ERROR._replace(kind=query.kind, name=query.user)


def finger_service(gate: ConnectionGate, request_timeout: float, first_byte_timeout: float,
                   needs: FingerNeeds, lookups_block: bool = False,
                   users: Callable[[], Any] | None = None,
                   proxy_from: tuple | None = None) -> ServiceSpec:
    """The finger service. With ``lookups_block`` (the system's accounts), only answers
    for users of the users file are made on the reading thread, each from the table
    its query was checked in (CheckedQuery); ``users()``, the store's current table,
    keys the answer cache."""
    cache = AnswerCache(users, MAX_CACHED_ANSWER_BYTES) if users else None
    forwards = None
    if needs.forward is not None:  # forwards hold at most half of finger's connections
        forwards = ConnectionGate(max(1, gate.limit // 2))
        needs = replace(needs, forwards=forwards)
    spec = ServiceSpec(
        "finger", FingerHandler, needs, gate, request_timeout, first_byte_timeout,
        take_query if forwards is None else taking_forwards(forwards),
        answers_inline=from_users_file,
        waits_outside=never if needs.forward is None else asks_another_host,
        memo=cache.answer if cache is not None else None, defers_accept=True,
        internal_error=internal_error,
        proxy_from=proxy_from)
    if not lookups_block:
        return spec
    if users is None or cache is None:  # no table to find users in
        return replace(spec, answers_inline=None)
    return replace(spec, handler=CheckedQueryHandler,
                   take_request=checking_queries(users, forwards),
                   answers_inline=in_its_table,
                   waits_outside=never if needs.forward is None else forwarded,
                   memo=cache.answer_checked, internal_error=checked_internal_error)


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
        #: The store's current table, read by the callers of ``get``.
        self.current = current_table
        self._size_of = size_of
        self._limit = limit
        self._table: Callable[[], Any] = _no_table
        self._answers: dict[Any, Any] = {}
        self._size = 0

    def answer(self, lines: Lines, client: Any,
               make: Callable[[Lines, Any], Answer]) -> Answer:
        """The answer to a query: the service's memo."""
        return self.get(self.current(), lines[0], make, lines, client)

    def answer_checked(self, checked: CheckedQuery, client: Any,
                       make: Callable[[CheckedQuery, Any], Answer]) -> Answer:
        """The answer to a query found in the table it was checked in, from that table:
        the memo with the system's accounts."""
        return self.get(checked.table, checked.line, make, checked, client)

    def get(self, table: Any, line: Any, make: Callable[..., Any], *args: Any) -> Any:
        """The answer to ``line`` (any key: the web's keys are request targets) from
        ``table`` (``current()``'s, or the one a query was checked in): one made from it
        earlier, or ``make(*args)``, kept while ``table`` is current."""
        if self._table() is not table:
            self._forget(table)
        made = self._answers.get(line)
        if made is None:
            made = make(*args)
            if self.current() is table:
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
