"""The connection gate: bounds in all and per source, and what a source is."""

import threading

from hypothesis import given
from hypothesis import strategies as st

from fingerd.serving.assembly import affordable_connections, budgets
from fingerd.serving.gate import ConnectionGate, source_of


def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64():
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7", "IPv4-mapped counts as IPv4"
    # As Python before 3.13 writes a mapped address a PROXY v2 header carries.
    assert source_of("::ffff:c000:207") == "192.0.2.7"
    assert source_of("::ffff:7f00:2") != source_of("::ffff:7f00:3")
    assert source_of("2001:db8:1:2::1") == source_of("2001:db8:1:2:ffff::9")
    assert source_of("2001:db8:1:2::1") != source_of("2001:db8:1:3::1")
    assert source_of("fe80::1%eth0") == source_of("fe80::2")


@given(st.text(max_size=60))
def test_any_host_text_gives_some_source(host):
    assert source_of(host) is not None


def test_the_limit_and_the_per_source_limit():
    gate = ConnectionGate(3, per_source=2)
    assert [gate.enter("a"), gate.enter("a"), gate.enter("a")] == [None, None, "per_source"]
    assert gate.enter("b") is None
    assert gate.enter("c") == "max_connections"
    gate.leave("a")
    assert gate.enter("c") is None and gate.active == 3
    for source in ("a", "b", "c"):
        gate.leave(source)
    assert gate.active == 0 and gate._by_source == {}, "nothing kept for gone sources"


def test_a_source_at_its_bound_is_told_so_even_when_every_slot_is_taken():
    # Told max_connections, the loop would shed another source's connection to make
    # room, and then refuse this one all the same.
    gate = ConnectionGate(2, per_source=1)
    assert gate.enter("a") is None and gate.enter("b") is None
    assert gate.enter("b") == "per_source"
    assert gate.enter("c") == "max_connections"


def test_slots_handed_back_by_other_threads_are_free_at_the_next_enter():
    gate = ConnectionGate(2, per_source=1)
    assert gate.enter("a") is None and gate.enter("b") is None
    assert gate.enter("c") == "max_connections"
    finished = [threading.Thread(target=gate.hand_back, args=(source,)) for source in "ab"]
    for thread in finished:
        thread.start()
    for thread in finished:
        thread.join(10)
    assert gate.active == 0, "a slot handed back is not counted as held"
    assert not gate.crowded()
    assert gate.enter("a") is None, "its source's bound is freed too"
    assert gate.enter("c") is None
    assert gate.enter("d") == "max_connections"
    gate.leave("a")
    gate.leave("c")
    assert gate.active == 0 and gate._by_source == {}


def test_a_source_claimed_late_finds_the_slots_handed_back_meanwhile_free():
    gate = ConnectionGate(3, per_source=1)
    assert gate.enter("a") is None
    assert gate.enter(None) is None, "a PROXY header will name its source"
    finisher = threading.Thread(target=gate.hand_back, args=("a",))
    finisher.start()
    finisher.join(10)
    assert gate.claim("a") is None, "the client from a was answered meanwhile"
    gate.leave("a")
    assert gate.active == 0 and gate._by_source == {}


def test_slots_freed_from_many_threads_at_once_are_all_counted():
    gate = ConnectionGate(1000, per_source=1000)
    for _ in range(1000):
        assert gate.enter("a") is None

    def free_some():
        for _ in range(250):
            gate.hand_back("a")

    threads = [threading.Thread(target=free_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(1000):  # the owner takes and frees slots meanwhile, as it does
        if gate.enter("a") is None:
            gate.leave("a")
    for thread in threads:
        thread.join(30)
    assert gate.enter("a") is None
    gate.leave("a")
    assert gate.active == 0 and gate._by_source == {}


def test_no_per_source_bound_with_zero():
    gate = ConnectionGate(5, per_source=0)
    assert all(gate.enter("a") is None for _ in range(5))
    assert gate.enter("a") == "max_connections"


def test_each_service_has_its_own_share():
    gates = budgets(256, 32)
    assert (gates["finger"].limit, gates["setter"].limit, gates["metrics"].limit) == (224, 32, 8)
    assert (gates["finger"].per_source, gates["setter"].per_source) == (32, 16), \
        "one account at most half the setter's share"
    assert budgets(256, 0)["metrics"].per_source == 4, "whatever max_per_source"
    assert (budgets(4, 0)["finger"].limit, budgets(4, 0)["setter"].limit) == (3, 1)


def test_the_web_directory_takes_a_quarter_only_when_it_listens():
    gates = budgets(256, 32, web=True)
    assert (gates["finger"].limit, gates["web"].limit, gates["setter"].limit) == (160, 64, 32)
    assert gates["web"].per_source == 32
    assert budgets(16, 5)["setter"].per_source == 1, "half of 2"
    assert budgets(8, 5)["setter"].per_source == 5, "a share of 1 cannot be halved"
    assert budgets(256, 32)["web"].limit == 0
    small = budgets(3, 0, web=True)
    assert (small["finger"].limit, small["web"].limit, small["setter"].limit) == (1, 1, 1)


def test_max_connections_is_lowered_to_what_descriptors_allow(caplog):
    assert affordable_connections(256, descriptors=1024) == 256
    assert affordable_connections(2000, descriptors=1024) == 1024 - 64 - 8
    assert "serving at most 952 connections" in caplog.text
