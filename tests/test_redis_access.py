"""Calling off a write whose reply did not come (redis_access.call_off), against a real
redis-server of the test's own: only the connection the write went on is closed."""

import pytest

from tests.support.markers import needs_tool
from tests.support.polling import during, wait_until
from tests.support.resp_relay import ExecDelayRelay

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

# Imported once the skip above has found the client library, which it needs.
from fingerd.users.redis_access import (  # noqa: E402
    Connection,
    Unanswered,
    Writers,
    _Identity,
    call_off,
    connect,
)

KEY = "test:users"
CHANNEL = "test:changes"
#: Seconds the relay holds each EXEC back on its way to Redis: longer than a set waits for
#: its reply (2 s).
HELD_SECONDS = 4.0
#: Connections Redis numbers before the writer's, so that a restarted Redis, which numbers
#: from 1 again, gives the writer's id to a client of the test's.
EARLIER_CONNECTIONS = 20


@pytest.fixture
def slow(redis_server, ports):
    """A relay to the test's Redis that holds every EXEC back on its way there: the write
    reaches Redis, late, on the relay's own connection."""
    relay = ExecDelayRelay(ports.take(), redis_server.port, HELD_SECONDS, held="request")
    yield relay.start()
    relay.stop()


def numbered(url, wanted):
    """A client whose connection Redis gave the id ``wanted`` (it numbers them in turn)."""
    for _ in range(wanted):
        client = redis.Redis.from_url(url, socket_timeout=5)
        given = client.client_id()
        if given == wanted:
            return client
        client.close()
        assert given < wanted, f"Redis numbered past {wanted}"
    raise AssertionError(f"Redis gave no connection the id {wanted}")


def unanswered_set(url):
    """A set on Writers of ``url`` whose reply does not come in time: its Unanswered."""
    writers = Writers(url)
    try:
        with pytest.raises(Unanswered) as unanswered:
            writers.set_status(KEY, CHANNEL, "alice", "Held back")
    finally:
        writers.close()
    return unanswered.value


def test_a_write_is_called_off_by_its_connection_s_id_and_the_address_redis_sees(
        redis_server, slow):
    problem = unanswered_set(slow.url)
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    checker = connect(slow.url)
    try:
        # The relay's end of its connection to Redis: not the writer's own address.
        listed = {client["id"]: client["addr"] for client in direct.client_list()}
        assert listed[str(problem.connection.id)] == problem.connection.address
        call_off(checker, problem.connection)
        assert str(problem.connection.id) not in {c["id"] for c in direct.client_list()}
        wait_until(slow.released.is_set, what="the write passed on to Redis, late")
        for _ in during(0.5):
            assert direct.hget(KEY, "alice") is None
    finally:
        direct.close()
        checker.close()


def test_after_a_restart_of_redis_the_client_given_the_same_id_is_not_closed(redis_server,
                                                                              slow):
    numbered(redis_server.url, EARLIER_CONNECTIONS).close()
    problem = unanswered_set(slow.url)
    redis_server.stop()
    redis_server.start()
    other = numbered(redis_server.url, problem.connection.id)  # another host's, say
    checker = connect(redis_server.url)
    try:
        call_off(checker, problem.connection)
        # Closed, it would reconnect, and be given another id.
        assert other.client_id() == problem.connection.id
    finally:
        other.close()
        checker.close()


class Answering:
    """A connection whose CLIENT INFO is answered ``answer`` (raised, if an exception)."""

    def __init__(self, answer):
        self.answer = answer

    def on_connect(self):
        pass

    def send_command(self, *args):
        pass

    def read_response(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [
    redis.ResponseError("NOPERM"), b"", b"id=x addr=127.0.0.1:4000", b"addr=127.0.0.1:4000",
    "id=7 addr=127.0.0.1:4000", None,
])
def test_a_connection_redis_does_not_name_serves_on_and_cannot_be_called_off(answer):
    identity = _Identity()
    identity(Answering(b"id=7 addr=127.0.0.1:4000 laddr=127.0.0.1:6379 name="))
    assert identity.connection == Connection(7, "127.0.0.1:4000")
    identity(Answering(answer))
    assert identity.connection is None
