"""No client, local user or service can take the service from everyone else.

Each attack is made from 127.0.0.1, from a second address, 127.0.0.2, and
over IPv6 from ::1, and another client (from another of them) is shown
served meanwhile.
"""

import collections
import contextlib
import select
import threading

import pytest

from tests.support.held import (
    YOUNG_SECONDS,
    closed_by_server,
    held,
    query_from,
    slots_freed,
    while_young,
)
from tests.support.markers import needs_ipv6, needs_root, needs_tool
from tests.support.net import answer_of, exchange
from tests.support.netns import in_network_namespace
from tests.support.polling import during, wait_until

BUSY = b"Server busy, try again later\r\n"

#: Attacker's source, and the client from another source that must be served meanwhile.
SOURCES = [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "::1"), ("::1", "127.0.0.1")]


@pytest.fixture(params=[pytest.param(pair, id="from-" + pair[0],
                                     marks=[needs_ipv6] if "::1" in pair else [])
                        for pair in SOURCES])
def sources(request):
    return request.param


def dual_stack(daemon, *services):
    """Make ``services`` listen on ::1 too, at the same port, before start."""
    for service in services:
        port = getattr(daemon, f"{service}_port")
        daemon.listen(service, f"127.0.0.1:{port}", f"[::1]:{port}")
    return daemon


def test_one_source_beyond_max_per_source_is_busy_and_others_are_served(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_per_source="4", fingerd__request_timeout="30"),
                   "finger").start()
    with held(d.finger_port, 4, attacker):
        wait_until(lambda: d.metric("fingerd_connections_active") == 4, what="4 held",
                   timeout=15)
        assert query_from(attacker, d.finger_port) == b"Server busy, try again later\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"
    wait_until(lambda: query_from(attacker, d.finger_port) == b"Happy and well\r\n",
               what="the source served again once its connections closed")


def test_a_full_setter_does_not_make_finger_busy(make_daemon, sources):
    """While the setter's share (2) is held by requests begun less than 1 s ago, a set is
    told busy, and finger serves another client all the same."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                               fingerd__request_timeout="30"), "finger", "setter").start()
    sets = []

    def look(_held):
        wait_until(lambda: d.metric("fingerd_connections_active") == 2, what="setter full")
        sets.append(query_from(attacker, d.setter_port, b"bob\r\nAway\r\n"))
        return sets[-1], query_from(other, d.finger_port)

    told, fingered = while_young(lambda: held(d.setter_port, 2, attacker, sends=b"bob"), look,
                                 slots_freed(d))
    assert told == BUSY
    assert fingered == b"Happy and well\r\n"
    assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == \
        sets.count(BUSY)


def test_a_finger_flood_does_not_hide_the_metrics(make_daemon, sources):
    """While finger's share (7) is held by queries begun less than 1 s ago, another
    client is told busy, and the scrape is answered all the same."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                               fingerd__request_timeout="30"), "finger", "metrics").start()
    queries = []

    def look(_held):
        wait_until(lambda: d.metric("fingerd_connections_active") == 7, what="finger full",
                   timeout=15)
        queries.append(query_from(other, d.finger_port))
        return queries[-1], query_from(other, d.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n")

    told, scraped = while_young(lambda: held(d.finger_port, 7, attacker, sends=b"al"), look,
                                slots_freed(d))
    assert told == BUSY
    assert scraped.startswith(b"HTTP/1.0 200 "), "the scrape is answered while finger is full"
    assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == \
        queries.count(BUSY)


SCRAPE = b"GET /metrics HTTP/1.0\r\n\r\n"


def test_one_address_cannot_hide_the_metrics_from_another(make_daemon, sources):
    """Scrapes begun less than 1 s ago from one address hold at most half the endpoint's
    8 connections (the rest told 503 at once), so a scraper elsewhere is answered."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__request_timeout="30"), "metrics").start()

    def look(socks):
        refused = set()

        def four_refused():
            readable, _, _ = select.select(socks, [], [], 0)
            refused.update(s for s in readable if s.recv(12) == b"HTTP/1.0 503")
            return len(refused) == 4

        wait_until(four_refused, what="4 of the 8 told 503 at once")
        return query_from(other, d.metrics_port, SCRAPE)

    scraped = while_young(lambda: held(d.metrics_port, 8, attacker, sends=b"GET /met"), look,
                          lambda: wait_until(d.ready, what="scrapes answered again"))
    assert scraped.startswith(b"HTTP/1.0 200 "), scraped[:40]


def test_a_scraper_beyond_the_metrics_limit_gets_503_not_the_finger_line(make_daemon, sources):
    """While the endpoint's 8 connections are held by scrapes begun less than 1 s ago, 4
    from each of two addresses."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__request_timeout="30"), "finger", "metrics").start()

    @contextlib.contextmanager
    def full():
        with held(d.metrics_port, 4, attacker, sends=b"GET /met") as one, \
                held(d.metrics_port, 4, other, sends=b"GET /met") as two:
            yield one + two

    def look(_held):
        full = any(query_from(other, d.metrics_port, SCRAPE).startswith(b"HTTP/1.0 503")
                   for _ in during(YOUNG_SECONDS))
        return full, query_from(attacker, d.metrics_port, SCRAPE), query_from(other,
                                                                              d.finger_port)

    full, answer, fingered = while_young(
        full, look, lambda: wait_until(d.ready, what="scrapes answered again"))
    assert full, "the metrics endpoint full"
    assert answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 1\r\n" in answer and b"Server busy" not in answer
    assert fingered == b"Happy and well\r\n"
    wait_until(d.ready, what="scrapes answered again")


def test_when_full_the_oldest_silent_connection_makes_room_for_a_new_client(make_daemon,
                                                                             sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                               fingerd__request_timeout="30",
                               fingerd__first_byte_timeout="30"), "finger").start()
    with held(d.finger_port, 1, attacker) as oldest:
        wait_until(lambda: d.metric("fingerd_connections_active") == 1,
                   what="the first connection taken", timeout=15)
        with held(d.finger_port, 6, attacker) as younger:
            wait_until(lambda: d.metric("fingerd_connections_active") == 7,
                       what="finger full", timeout=15)
            assert query_from(other, d.finger_port) == b"Happy and well\r\n"
            assert d.metric("fingerd_connections_rejected_total", reason="shed") == 1
            assert d.metric("fingerd_connections_rejected_total",
                            reason="max_connections") == 0
            readable, _, _ = select.select(oldest + younger, [], [], 5)
            assert readable == oldest and oldest[0].recv(10) == b"", \
                "the silent connection the worker took first, and it alone, was closed"



@needs_root
@needs_tool("ip", "iproute2")
def test_a_connection_made_from_a_syn_cookie_is_young_not_held_back(make_daemon):
    """A burst that overflows the listen queue is answered with SYN cookies, and a
    connection made from one is accepted at once, before its query comes, where finger
    has the kernel hold back silent connections for a second (TCP_DEFER_ACCEPT): it is
    young, not one held back, so a full service tells a newcomer busy rather than shed it.
    In a network namespace of its own, where every connection is made from a cookie."""
    def body():
        d = make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                        fingerd__request_timeout="30",
                        fingerd__first_byte_timeout="30").start()

        @contextlib.contextmanager
        def full():
            with held(d.finger_port, 7) as young:
                wait_until(lambda: d.metric("fingerd_connections_active") == 7,
                           what="finger full", timeout=15)
                yield young

        def look(young):
            newcomer = query_from("127.0.0.1", d.finger_port)
            for s in young:
                s.sendall(b"alice\r\n")
            return newcomer, [answer_of(s) for s in young]

        seen = while_young(full, look, slots_freed(d))
        return seen, d.metric("fingerd_connections_rejected_total", reason="shed")

    (newcomer, answers), shed = in_network_namespace(body, {"ipv4/tcp_syncookies": "2"})
    assert (newcomer, answers, shed) == (BUSY, [b"Happy and well\r\n"] * 7, 0)

def test_when_half_full_connections_without_a_whole_request_get_only_first_byte_timeout(
        make_daemon, sources):
    """Silent, or with a request begun and not ended: both closed at first_byte_timeout."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                               fingerd__request_timeout="60",
                               fingerd__first_byte_timeout="2"), "finger").start()
    with held(d.finger_port, 8, attacker) as silent, \
            held(d.finger_port, 1, attacker, sends=b"al") as begun:
        wait_until(lambda: d.metric("fingerd_connections_active") == 9, what="9 held",
                   timeout=15)
        # A socket the server closed reads as closed at every look: count them each time.
        wait_until(lambda: len(closed_by_server(silent + begun)) == 9,
                   timeout=30, what="the 9 connections closed long before 60 s")
        assert d.metric("fingerd_connections_rejected_total", reason="timeout") == 9
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"


def test_when_half_full_a_request_ended_within_first_byte_timeout_is_answered(make_daemon,
                                                                             sources):
    """Begun, and ended 1 s later while the share is half taken: within first_byte_timeout
    (2 s), so answered."""
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                               fingerd__request_timeout="60",
                               fingerd__first_byte_timeout="2"), "finger").start()

    @contextlib.contextmanager
    def crowd_and_one():
        with held(d.finger_port, 8, attacker, sends=b"al"), \
                held(d.finger_port, 1, other, sends=b"al") as one:
            wait_until(lambda: d.metric("fingerd_connections_active") == 9, what="9 held")
            yield one

    def end_a_second_later(one):
        for _ in during(1.0, interval=0.1):
            if closed_by_server(one):
                return b"closed"
        one[0].sendall(b"ice\r\n")
        return answer_of(one[0])

    assert while_young(crowd_and_one, end_a_second_later, slots_freed(d), seconds=2.0) == \
        b"Happy and well\r\n"


def test_below_half_full_connections_without_a_whole_request_keep_request_timeout(
        make_daemon):
    d = make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                    fingerd__request_timeout="60", fingerd__first_byte_timeout="0.5").start()
    with held(d.finger_port, 2) as silent, held(d.finger_port, 1, sends=b"al") as begun:
        wait_until(lambda: d.metric("fingerd_connections_active") == 3, what="3 held",
                   timeout=15)
        for _ in during(3.0, interval=0.2):
            assert not closed_by_server(silent + begun)
        assert d.metric("fingerd_connections_rejected_total", reason="timeout") == 0


def test_a_burst_of_sets_gets_every_answer_or_the_busy_line(make_daemon):
    """40 sets at once from root, five times the setter's share: a connection accepted a
    moment before its bytes were read is never shed as silent; each client is answered,
    beyond the share with the busy line."""
    d = make_daemon(fingerd__max_connections="64", fingerd__max_per_source="0",
                    setter__rate_limit="0").start()
    count = 40
    barrier = threading.Barrier(count, timeout=30)
    replies = []

    def one(i):
        barrier.wait()
        try:
            replies.append(exchange(d.setter_port, f"alice\r\nBurst {i}\r\n".encode(),
                                    timeout=15))
        except OSError as exc:
            replies.append(repr(exc).encode())

    for _round in range(3):
        replies.clear()
        barrier.reset()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(replies) == count
        told = collections.Counter(replies)
        assert set(told) <= {b"OK\r\n", b"Server busy, try again later\r\n"}, told
        assert told[b"OK\r\n"] >= 1, told
    assert d.metric("fingerd_connections_rejected_total", reason="shed") == 0




def test_clients_keeping_one_connection_each_are_never_over_max_per_source(make_daemon):
    """An answer made on a pool thread (a system account's lookup) frees its slot before
    the client can read the end of it: four clients from one address, each connecting
    again as soon as it has read its last answer, are never told busy under
    ``max_per_source = 4``."""
    d = make_daemon(fingerd__max_per_source="4", finger__system_users="yes").start()
    replies = [[] for _ in range(4)]

    def one(mine):
        for _ in range(300):
            mine.append(exchange(d.finger_port, b"nosuch\r\n", timeout=15))

    threads = [threading.Thread(target=one, args=(mine,)) for mine in replies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert collections.Counter(sum(replies, [])) == {b"No such user\r\n": 1200}

def test_a_slot_answered_on_a_pool_thread_is_free_for_the_next_client(make_daemon):
    """The setter answers on the pool, whose threads hand their slot back to the setter's
    reading thread: with a share of one slot and one a source, each set in a row is
    answered, and no slot is counted held once they are. A slot is freed just after its
    connection is closed, so a client that connects at once after the close may find
    it still held for that moment: each set is tried again until it is answered."""
    d = make_daemon(fingerd__max_connections="8", fingerd__max_per_source="1").start()
    for n in range(5):
        wait_until(lambda n=n: d.setter(f"alice\r\nAway {n}\r\n".encode()) == b"OK\r\n",
                   what=f"set {n} answered OK (a slot held for good would never be)")
    assert d.finger(b"alice\r\n") == b"Away 4\r\n"
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="no slot held")
    rejected = d.metric("fingerd_connections_rejected_total", reason="max_connections")
    assert d.setter(b"alice\r\nBack\r\n") == b"OK\r\n", "every slot free, the next set is let in"
    assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == rejected
