"""Slowloris with one byte: connections that send the start of a request and nothing more,
reopened as soon as they are closed, from enough sources to hold a service's whole share,
cost another client nothing (CONTRACT section 5): once the share is half taken they are
closed after ``first_byte_timeout``, and once it is full the oldest open 1 s is shed for
the newcomer.

The victim connects from an address of its own. While every connection of the attack is
younger than 1 s it may be told busy, as the contract says; from its first answer on it
asks 30 times, a quarter of a second apart, while the attack goes on, through its
renewals.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.held import Slowloris, query_from
from tests.support.polling import during, wait_until

VICTIM = "127.0.0.99"
ASKED = 30
#: Of ASKED, how many the victim must get answered.
ANSWERED = 28


def ask_often(port: int, request: bytes, answered: Callable[[bytes], bool]) -> int:
    """How many of ASKED questions a quarter of a second apart the victim gets answered,
    from its first answer on (the attack's first connections then old enough to shed)."""
    wait_until(lambda: answered(query_from(VICTIM, port, request)), timeout=10,
               interval=0.25, what="a first answer to the victim")
    return sum(answered(query_from(VICTIM, port, request))
               for _ in zip(range(ASKED), during(60, interval=0.25)))


def http_ok(reply: bytes) -> bool:
    return reply.split(b"\r\n", 1)[0].endswith(b" 200 OK")


def test_one_byte_connections_from_seven_sources_leave_finger_to_others(make_daemon):
    d = make_daemon(fingerd__request_timeout="10").start()
    sources = [f"127.0.0.{i}" for i in range(11, 18)]
    with Slowloris(d.finger_port, sources, 32, b"a") as attack:
        wait_until(lambda: d.metric("fingerd_connections_active") == 224,
                   what="finger's share (224) held", timeout=20)
        answered = ask_often(d.finger_port, b"alice\r\n", b"Happy and well\r\n".__eq__)
    assert answered >= ANSWERED, f"{answered} of {ASKED}"
    assert attack.connects > 224, "the attack renewed what was closed"
    assert d.metric("fingerd_connections_rejected_total", reason="shed") >= 1
    assert d.metric("fingerd_connections_rejected_total", reason="timeout") >= 224


def test_partial_request_heads_leave_the_web_directory_to_others(make_daemon, ports):
    d = make_daemon(fingerd__request_timeout="10").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    with Slowloris(d.web_port, ["127.0.0.11", "127.0.0.12"], 32,
                   b"GET / HTTP/1.1\r\nHost: x\r\n") as attack:
        wait_until(lambda: d.metric("fingerd_connections_active") == 64,
                   what="the web's share (64) held", timeout=20)
        answered = ask_often(d.web_port, b"GET /api/users/alice HTTP/1.0\r\n\r\n", http_ok)
    assert answered >= ANSWERED, f"{answered} of {ASKED}"
    assert attack.connects > 64, "the attack renewed what was closed"


def test_partial_get_lines_do_not_lock_the_scraper_out(make_daemon):
    d = make_daemon(fingerd__request_timeout="10").start()
    with Slowloris(d.metrics_port, ["127.0.0.11"], 8, b"GET /metrics HTTP/1.0\r\n") as attack:
        wait_until(lambda: attack.connects >= 8, what="the endpoint's 8 connections held")
        scraped = ask_often(d.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n", http_ok)
    assert scraped >= ANSWERED, f"{scraped} of {ASKED}"
    assert attack.connects > 8, "the attack renewed what was closed"
