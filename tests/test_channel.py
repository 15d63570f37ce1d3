"""What the root parent makes of the worker's messages: it trusts nothing in them."""

import json
import math
import os
import tempfile
import threading
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.process.channel import (
    MAX_MESSAGE_BYTES,
    MonitorClient,
    channel,
    error_reply,
    parse_message,
    set_problem,
    unknown_reply,
)
from fingerd.users.editing import OutcomeUnknown, StoreError
from tests.support.fuzzing import NAMES, tokens

#: A users file in a directory that does not exist: the parent's answer is worked
#: out in full, and its write fails, so no example writes a file.
NOWHERE = os.path.join(tempfile.gettempdir(), f"fingerd-test-{uuid.uuid4().hex}", "users")


#: When the worker stops waiting for an answer, on CLOCK_MONOTONIC.
DEADLINE = 12345.5


def set_message(name, status, request_id=1):
    return json.dumps({"op": "set", "id": request_id, "name": name, "status": status,
                       "deadline": DEADLINE}).encode()


def test_ready_and_set_requests():
    assert parse_message(b'{"op": "ready"}') == {"op": "ready"}
    assert parse_message(set_message("alice", "Happy")) == {
        "op": "set", "id": 1, "name": "alice", "status": "Happy", "deadline": DEADLINE}


def test_a_ready_message_may_say_what_is_wrong_with_the_users_file_as_text():
    said = {"op": "ready", "users": "users file rejected: users:3: expected user:status"}
    assert parse_message(json.dumps(said).encode()) == said
    for users in ("1", "[]", '{"a": 1}', '"\\ud800"'):
        assert parse_message(f'{{"op": "ready", "users": {users}}}'.encode()) is None, users


def test_the_longest_users_problem_fits_in_one_message():
    """Whatever the worker's text, its ready message is one the parent reads whole."""
    parent_end, worker_end = channel()
    with parent_end, worker_end:
        MonitorClient(worker_end).ready("\U0001f600\n" * MAX_MESSAGE_BYTES)
        data = parent_end.recv(MAX_MESSAGE_BYTES + 1)
    assert len(data) <= MAX_MESSAGE_BYTES and parse_message(data)["users"].startswith(
        "\U0001f600\n")


def test_a_set_never_delivered_is_an_error_and_one_unanswered_an_unknown_outcome():
    """ERROR tells a client that nothing changed: true only of a request the parent
    never had. One it took and never answered may have been written."""
    parent_end, worker_end = channel()
    parent_end.close()
    with worker_end, pytest.raises(StoreError, match="cannot be reached"):
        MonitorClient(worker_end).write_status("users", "alice", "Happy")
    for end_it, said in ((lambda parent: parent.close(), "the parent process is gone"),
                         (lambda parent: None, "did not answer: timed out")):
        parent_end, worker_end = channel()
        with parent_end, worker_end:
            client = MonitorClient(worker_end, timeout=0.2)
            taken = threading.Thread(target=lambda: (parent_end.recv(MAX_MESSAGE_BYTES),
                                                     end_it(parent_end)))
            taken.start()
            with pytest.raises(OutcomeUnknown, match=said):
                client.write_status("users", "alice", "Happy")
            taken.join(10)


def test_a_set_the_parent_says_has_an_unknown_outcome_is_one():
    parent_end, worker_end = channel()
    with parent_end, worker_end:
        answer = threading.Thread(target=lambda: (parent_end.recv(MAX_MESSAGE_BYTES),
                                                  parent_end.send(unknown_reply(1, "why"))))
        answer.start()
        with pytest.raises(OutcomeUnknown, match="^why$"):
            MonitorClient(worker_end).write_status("users", "alice", "Happy")
        answer.join(10)


def test_a_set_carries_a_finite_deadline():
    for deadline in ('"1"', "true", "null", "NaN", "Infinity", "-Infinity", "[1]"):
        data = ('{"op": "set", "id": 1, "name": "alice", "status": "x", "deadline": '
                f'{deadline}}}').encode()
        assert parse_message(data) is None, data
    assert parse_message(b'{"op": "set", "id": 1, "name": "alice", "status": "x"}') is None


def test_malformed_requests_are_none():
    for data in (b"", b"\xff", b"null", b"[]", b'{"op": "exec"}', b'{"op": "set", "id": 1}',
                 b'{"op": "set", "id": "1", "name": "a", "status": "b"}',
                 set_message("alice", "x" * MAX_MESSAGE_BYTES)):
        assert parse_message(data) is None, data


def test_a_deeply_nested_request_is_malformed_not_a_crash():
    """json.loads raises RecursionError, not ValueError, past its nesting limit: the
    parent's loop must not end on a worker's message."""
    for opening in (b"[", b'{"a":'):
        assert parse_message(opening * (MAX_MESSAGE_BYTES // len(opening))) is None


def test_a_request_with_a_lone_surrogate_is_malformed_not_a_crash():
    """JSON can carry a lone surrogate ("\\ud800"), which no UTF-8 file can hold:
    writing it would raise UnicodeEncodeError in the parent."""
    assert parse_message(set_message("alice", "\ud800")) is None
    assert parse_message(set_message("alice", "x\udfff" * 70)) is None
    assert parse_message(set_message("\ud800", "x")) is None


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
#: Text that JSON can carry: any code point, lone surrogates included.
TEXT = st.builds(lambda head, odd, tail: head + odd + tail, st.text(max_size=30),
                 st.text(SURROGATES, max_size=2), st.text(max_size=30))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=5), inner,
                                                            max_size=3)),
                    max_leaves=5)
#: Requests as a worker, honest or not, could write them: sets of any text, and
#: requests of any shape.
REQUESTS = st.one_of(
    st.fixed_dictionaries({"op": st.just("set"), "id": st.integers(),
                           "name": st.one_of(NAMES, TEXT), "status": TEXT,
                           "deadline": st.one_of(st.floats(), st.integers(), JSON)}),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["ready", "set", "alive", "closed", "SET", ""])},
        optional={"id": st.one_of(st.integers(), JSON), "name": st.one_of(NAMES, JSON),
                  "status": st.one_of(TEXT, JSON), "served": st.one_of(st.integers(), JSON),
                  "deadline": st.one_of(st.floats(), JSON),
                  "extra": JSON}))
DATAGRAMS = st.one_of(
    st.binary(max_size=MAX_MESSAGE_BYTES + 2),
    tokens([b"{", b"}", b"[", b"]", b'"op"', b'"set"', b'"ready"', b":", b",", b'"id"', b"1",
            b'"name"', b'"status"', b'"alice"', b'"\\ud800"', b'"\\u0000"', b"\xff", b"1e999",
            b"-0", b"NaN", b" "]),
    st.integers(1, MAX_MESSAGE_BYTES).map(lambda depth: b"[" * depth),
    JSON.map(lambda value: json.dumps(value).encode()),
    REQUESTS.map(lambda value: json.dumps(value).encode()),
    REQUESTS.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8",
                                                                             "surrogatepass")))


@given(DATAGRAMS)
def test_any_datagram_is_a_request_answered_or_none(data):
    message = parse_message(data)
    if message is None:
        return
    assert message["op"] in ("ready", "set", "alive", "closed")
    if message["op"] == "alive":
        assert type(message["served"]) is int and message["served"] >= 0
    if message["op"] == "set":
        assert type(message["deadline"]) in (int, float) and math.isfinite(message["deadline"])
        problem = set_problem(message)
        assert problem is None or isinstance(problem, str)
        reply = json.loads(error_reply(message["id"], problem or "cannot write users file"))
        assert reply["id"] == message["id"] and reply["ok"] is False and reply["error"]


@given(st.text(max_size=100), st.text(max_size=300), st.integers(1, 2 ** 63))
def test_what_an_honest_worker_sends_reads_back(name, status, request_id):
    data = set_message(name, status, request_id)
    message = parse_message(data)
    if len(data) <= MAX_MESSAGE_BYTES:
        assert message == {"op": "set", "id": request_id, "name": name, "status": status,
                           "deadline": DEADLINE}
    else:
        assert message is None


def test_a_worker_says_it_accepts_no_more_in_a_message_the_parent_reads():
    parent_end, worker_end = channel()
    with parent_end, worker_end:
        MonitorClient(worker_end).not_accepting()
        assert parse_message(parent_end.recv(MAX_MESSAGE_BYTES)) == {"op": "closed"}


def test_a_heartbeat_carries_a_count_of_requests_answered():
    assert parse_message(b'{"op": "alive", "served": 3}') == {"op": "alive", "served": 3}
    for bad in (b'{"op": "alive"}', b'{"op": "alive", "served": -1}',
                b'{"op": "alive", "served": true}', b'{"op": "alive", "served": "3"}',
                b'{"op": "alive", "served": 1.5}'):
        assert parse_message(bad) is None, bad
