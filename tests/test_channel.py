"""What the root parent makes of the worker's messages: it trusts nothing in them."""

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.process.channel import (
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MonitorClient,
    channel,
    error_reply,
    loads_shallow,
    parse_message,
    set_problem,
    unknown_reply,
)
from fingerd.users.editing import OutcomeUnknown, StoreError
from tests.support import ROOT
from tests.support.fuzzing import NAMES, tokens

#: A users file in a directory that does not exist: the parent's answer is worked
#: out in full, and its write fails, so no example writes a file.
NOWHERE = os.path.join(tempfile.gettempdir(), f"fingerd-test-{uuid.uuid4().hex}", "users")


#: When the worker stops waiting for an answer, on CLOCK_MONOTONIC.
DEADLINE = 12345.5


#: The client a set is made by, as the setter names it for the parent's log line.
BY = "127.0.0.1 (uid 1000, alice)"


def set_message(name, status, request_id=1):
    return json.dumps({"op": "set", "id": request_id, "name": name, "status": status,
                       "by": BY, "deadline": DEADLINE}).encode()


def test_ready_and_set_requests():
    assert parse_message(b'{"op": "ready"}') == {"op": "ready"}
    assert parse_message(set_message("alice", "Happy")) == {
        "op": "set", "id": 1, "name": "alice", "status": "Happy", "by": BY,
        "deadline": DEADLINE}


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
        MonitorClient(worker_end).write_status("users", "alice", "Happy", BY)
    for end_it, said in ((lambda parent: parent.close(), "the parent process is gone"),
                         (lambda parent: None, "did not answer: timed out")):
        parent_end, worker_end = channel()
        with parent_end, worker_end:
            client = MonitorClient(worker_end, timeout=0.2)
            taken = threading.Thread(target=lambda: (parent_end.recv(MAX_MESSAGE_BYTES),
                                                     end_it(parent_end)))
            taken.start()
            with pytest.raises(OutcomeUnknown, match=said):
                client.write_status("users", "alice", "Happy", BY)
            taken.join(10)


def test_a_set_the_parent_says_has_an_unknown_outcome_is_one():
    parent_end, worker_end = channel()
    with parent_end, worker_end:
        answer = threading.Thread(target=lambda: (parent_end.recv(MAX_MESSAGE_BYTES),
                                                  parent_end.send(unknown_reply(1, "why"))))
        answer.start()
        with pytest.raises(OutcomeUnknown, match="^why$"):
            MonitorClient(worker_end).write_status("users", "alice", "Happy", BY)
        answer.join(10)


def test_a_set_carries_a_finite_deadline():
    for deadline in ('"1"', "true", "null", "NaN", "Infinity", "-Infinity", "[1]"):
        data = ('{"op": "set", "id": 1, "name": "alice", "status": "x", "by": "b", '
                f'"deadline": {deadline}}}').encode()
        assert parse_message(data) is None, data
    assert parse_message(b'{"op": "set", "id": 1, "name": "alice", "status": "x", '
                         b'"by": "b", "deadline": 1}') is not None
    assert parse_message(b'{"op": "set", "id": 1, "name": "alice", "status": "x", '
                         b'"by": "b"}') is None


def test_a_set_names_its_client_as_text_for_the_parents_log():
    request = {"op": "set", "id": 1, "name": "alice", "status": "x", "deadline": 1}
    assert parse_message(json.dumps(request).encode()) is None
    for by in (1, None, [], "\ud800"):
        assert parse_message(json.dumps(dict(request, by=by)).encode()) is None, by
    assert parse_message(json.dumps(dict(request, by="b")).encode()) is not None


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


def frames_below():
    """How many frames the caller runs on."""
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_nesting_is_refused_before_json_reads_it():
    """json's decoder recurses once a level; on Python 3.9, overflowing there under
    Hypothesis aborted the whole process instead of raising RecursionError. With
    room for 30 more frames, where json.loads raises RecursionError, nothing
    recurses: the deepest message is a ValueError, and a shallow one reads."""
    deep = [b"[" * MAX_MESSAGE_BYTES, b'{"a":' * (MAX_MESSAGE_BYTES // 5),
            b'{"op": "set", "name": "' + b'\\"' * 10 + b'", "s": ' + b"[" * 4000]
    shallow = rb'{"op": "set", "name": "[{\"}]", "id": 1, "x": [1, "]", "\\"]}'
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames_below() + 30)
    try:
        with pytest.raises(RecursionError):
            json.loads(deep[0])
        for data in deep:
            with pytest.raises(ValueError, match="nested deeper than 2"):
                loads_shallow(data)
        assert loads_shallow(shallow) == {"op": "set", "name": '[{"}]', "id": 1,
                                          "x": [1, "]", "\\"]}
    finally:
        sys.setrecursionlimit(limit)


#: A parent reading the deepest message while a garbage collection, due at any depth of
#: json's decoder, runs a finalizer that recurses a little.
COLLECTED_MID_DECODE = """
import gc
from fingerd.process.channel import MAX_MESSAGE_BYTES, parse_message
def down(n):
    return down(n - 1) if n else 0
class Litter:
    def __init__(self):
        self.me = self
    def __del__(self):
        down(60)
for threshold in range(850, 1010, 5):
    gc.collect()
    gc.set_threshold(threshold)
    Litter()
    assert parse_message(b"[" * MAX_MESSAGE_BYTES) is None
print("read them all")
"""


def test_a_collection_while_reading_a_deep_message_does_not_abort_the_parent():
    """A finalizer that a garbage collection runs while json's decoder is deep overflows
    the stack: on Python 3.11 it fails (RecursionError, "Exception ignored"); on 3.9
    it leaves the interpreter overflowing, and the decoder, going on past the limit,
    aborts the process (SIGABRT): the parent's loop, and every worker with it. The
    parent never lets json go deep (the environment runs give this test 3.9)."""
    ran = subprocess.run([sys.executable, "-c", COLLECTED_MID_DECODE], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout == "read them all\n"
    assert "RecursionError" not in ran.stderr, ran.stderr[-3000:]


def nesting(value):
    """How deep arrays and objects nest in ``value``: 0 for a scalar."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


#: Pieces of JSON with what a scan for brackets can be fooled by: brackets in
#: strings, escaped quotes and backslashes, a quote as an escape, other encodings.
JSON_PIECES = [b"[", b"]", b"{", b"}", b'"', b'\\"', b"\\\\", b"\\u0022", b"\\u005b",
               b":", b",", b"1", b'"a"', b" ", b"\x00", b"\xff", b"\xfe", b"\xef\xbb\xbf"]


@given(st.one_of(tokens(JSON_PIECES, max_size=40), st.binary(max_size=200)))
def test_anything_loads_shallow_or_is_a_value_error(data):
    try:
        value = loads_shallow(data)
    except ValueError:
        return
    assert nesting(value) <= MAX_NESTING
    assert value == json.loads(data)


BRACKETY = st.text(st.sampled_from('[]{}"\\:, a\u00e9\U0001f600'), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), BRACKETY,
                    st.floats(allow_nan=False, allow_infinity=False))


@given(st.one_of(SCALARS, st.lists(SCALARS, max_size=4),
                 st.dictionaries(BRACKETY, SCALARS, max_size=4)), st.booleans())
def test_shallow_json_reads_as_json_reads_it(value, ascii_only):
    assert loads_shallow(json.dumps(value, ensure_ascii=ascii_only).encode()) == value


@given(st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(BRACKETY, inner,
                                                                      max_size=3))))
def test_json_that_nests_is_refused(value):
    data = json.dumps(value).encode()
    if nesting(value) > MAX_NESTING:
        with pytest.raises(ValueError, match="nested deeper"):
            loads_shallow(data)
    else:
        assert loads_shallow(data) == value


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
                           "by": BY, "deadline": DEADLINE}
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
