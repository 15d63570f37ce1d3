"""A call that may block is waited for at most its deadline, and stuck ones are bounded."""

import logging
import threading

import pytest

from fingerd.finger import sources
from fingerd.finger.bounded import BoundedCalls, HangLog, Unfinished
from tests.support.polling import wait_until


class Stuck:
    """A call that never returns until released, as an account lookup behind a hung
    LDAP server; it notes each thread that made it."""

    def __init__(self):
        self.release = threading.Event()
        self.threads = []

    def __call__(self, value):
        self.threads.append(threading.current_thread())
        self.release.wait(30)
        return value


@pytest.fixture
def stuck():
    call = Stuck()
    yield call
    call.release.set()


def test_a_call_that_never_returns_costs_the_caller_only_its_deadline(stuck):
    calls = BoundedCalls(2, "account lookup")
    with pytest.raises(Unfinished, match=r"^account lookup took longer than 0.2 s$"):
        calls.call(0.2, stuck, "x")
    assert calls.abandoned() == 1
    assert len(stuck.threads) == 1
    assert stuck.threads[0] is not threading.current_thread()
    assert stuck.threads[0].daemon, "an abandoned call must not keep the process alive"


def test_beyond_the_limit_a_call_fails_at_once_without_a_thread(stuck):
    calls = BoundedCalls(2, "plan read")
    for _ in range(2):
        with pytest.raises(Unfinished, match="took longer"):
            calls.call(0.1, stuck, "x")
    with pytest.raises(Unfinished, match=r"^too many plan reads in progress$"):
        calls.call(30, stuck, "x")
    assert len(stuck.threads) == 2, "no third call was started"
    assert sum(t.name == "fingerd-plan-read" for t in threading.enumerate()) == 2


def test_calls_are_possible_again_once_the_stuck_ones_finish(stuck):
    calls = BoundedCalls(1, "account lookup")
    with pytest.raises(Unfinished, match="took longer"):
        calls.call(0.1, stuck, "x")
    with pytest.raises(Unfinished, match="too many"):
        calls.call(0.1, str, "y")
    stuck.release.set()
    wait_until(lambda: calls.abandoned() == 0, what="the stuck call to finish")
    assert calls.call(5, str.upper, "ada") == "ADA"


def test_what_the_call_raises_reaches_the_caller():
    calls = BoundedCalls(1, "account lookup")
    with pytest.raises(KeyError, match="getpwnam"):
        calls.call(5, {}.__getitem__, "getpwnam")
    assert calls.call(5, len, "free again") == 10
    assert calls.abandoned() == 0



def occupy(calls, stuck):
    """Start a call of ``stuck`` on a thread of the test's own, once it runs: that thread."""
    first = threading.Thread(target=calls.call, args=(30, stuck, "first"), daemon=True)
    first.start()
    wait_until(lambda: len(stuck.threads) == 1, what="the first call to run")
    return first


def test_beyond_the_limit_a_call_waits_while_the_running_ones_are_in_time(stuck):
    """A burst is no hang: with every slot taken by calls still within their deadline,
    the next call waits for one to finish rather than fail."""
    calls = BoundedCalls(1, "account lookup", stuck_after=30)
    first = occupy(calls, stuck)
    answers = []
    second = threading.Thread(target=lambda: answers.append(calls.call(30, str.upper, "b")),
                              daemon=True)
    second.start()
    assert not second.join(0.2) and answers == [], "it waits for the slot"
    stuck.release.set()
    second.join(10)
    first.join(10)
    assert answers == ["B"]


def test_a_call_waiting_for_a_slot_fails_at_its_own_deadline(stuck):
    calls = BoundedCalls(1, "account lookup", stuck_after=30)
    occupy(calls, stuck)
    with pytest.raises(Unfinished, match=r"^too many account lookups in progress$"):
        calls.call(0.1, str, "waits")
    assert len(stuck.threads) == 1 and calls.abandoned() == 0


def test_once_a_running_call_is_stuck_a_call_beyond_the_limit_fails_at_once(stuck):
    """Stuck: running longer than stuck_after, though not yet abandoned by its caller."""
    calls = BoundedCalls(1, "account lookup", stuck_after=0.2)
    occupy(calls, stuck)
    with pytest.raises(Unfinished, match=r"^too many account lookups in progress$"):
        calls.call(30, str, "waits at most until the first is stuck")
    assert calls.abandoned() == 0 and len(stuck.threads) == 1


class SlowListing:
    """A system accounts source whose listing waits for ``release`` (a long utmp), then
    gives ``outcome``'s value or raises it; it counts the listings made."""

    def __init__(self, outcome=(("alice", "alice: On since"),)):
        self.release = threading.Event()
        self.outcome = outcome
        self.made = 0

    def lookup(self, name, verbose):
        return None

    def listing(self):
        self.made += 1
        self.release.wait(30)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return list(self.outcome)


def list_at_once(bounded, source, monkeypatch, count=5):
    """``count`` list queries at once, the first making the listing and the others
    waiting for it before it is released: what each got, a value or what it raised."""
    waiting = []
    wait = sources._Shared.wait

    def counted(shared, timeout):
        waiting.append(shared)
        return wait(shared, timeout)

    monkeypatch.setattr(sources._Shared, "wait", counted)
    got = []

    def ask():
        try:
            got.append(bounded.listing())
        except Exception as exc:
            got.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    threads[0].start()
    wait_until(lambda: source.made == 1, what="the listing begun")
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(waiting) == count - 1, what="the other queries waiting")
    source.release.set()
    for thread in threads:
        thread.join(30)
    return got


def test_a_streak_of_hung_calls_is_logged_once_and_its_end_once(stuck, caplog):
    """Its end only once no abandoned call is left: one still hung would fail the next."""
    calls = BoundedCalls(4, "name lookup")
    hangs = HangLog(calls, logging.getLogger("test.hangs"), "forwarding", "told the client")
    with caplog.at_level(logging.INFO, logger="test.hangs"):
        for host in ("a", "b"):
            with pytest.raises(Unfinished) as raised:
                calls.call(0.05, stuck, host)
            hangs.unfinished(f"looking up {host!r}", raised.value)
        assert calls.call(1, str, "quick") == "quick"
        hangs.finished()  # two calls still hung: the streak goes on
        stuck.release.set()
        wait_until(lambda: calls.abandoned() == 0, what="the hung calls to end")
        hangs.finished()
        hangs.finished()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "forwarding: looking up 'a': name lookup took longer than 0.05 s "
                          "(told the client; more such failures are not logged until lookups "
                          "finish in time again)"),
        (logging.INFO, "forwarding: lookups finish in time again")]


def test_list_queries_meanwhile_share_the_listing_being_made(monkeypatch):
    """Several listings at once, each slower than a hung lookup may be, would fail the
    lookups of everyone else: queries that come while one is made wait for it."""
    source = SlowListing()
    got = list_at_once(sources.BoundedSource(source, 10, 2), source, monkeypatch)
    assert got == [[("alice", "alice: On since")]] * 5 and source.made == 1


def test_the_listing_s_failure_is_every_waiting_query_s(monkeypatch):
    source = SlowListing(OSError(5, "Input/output error"))
    bounded = sources.BoundedSource(source, 10, 2)
    got = list_at_once(bounded, source, monkeypatch)
    assert [type(error) for error in got] == [OSError] * 5 and source.made == 1
    source.outcome = ()
    assert bounded.listing() == [] and source.made == 2, "the next query lists again"


def test_a_query_waits_for_the_listing_no_longer_than_its_own_timeout():
    source = SlowListing()
    bounded = sources.BoundedSource(source, 0.2, 2)
    try:
        first = threading.Thread(target=lambda: pytest.raises(Unfinished, bounded.listing))
        first.start()
        wait_until(lambda: source.made == 1, what="the listing begun")
        with pytest.raises(Unfinished):
            bounded.listing()
        first.join(30)
    finally:
        source.release.set()
