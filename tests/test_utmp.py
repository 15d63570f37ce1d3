"""Parsing utmp and wtmp records."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.utmp import RECORD, Session, last_session, parse_utmp
from tests.support.utmp import pack_session


def test_record_is_glibc_size():
    assert RECORD.size == 384


def test_user_sessions_round_trip():
    sessions = [Session("alice", "pts/0", "192.0.2.1", 1700000000),
                Session("bob", "tty1", "", 1700000100)]
    assert parse_utmp(b"".join(pack_session(s) for s in sessions)) == sessions


def test_other_record_types_and_partial_records_are_ignored():
    other = RECORD.pack(2, 0, b"~", b"", b"reboot", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    data = other + pack_session(Session("carol", "pts/1", "", 5)) + b"\0" * 100
    assert parse_utmp(data) == [Session("carol", "pts/1", "", 5)]


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_error(data):
    assert isinstance(parse_utmp(data), list)


def test_last_session_is_the_users_latest_login_record():
    logout = RECORD.pack(8, 1, b"pts/1", b"", b"", b"", 0, 0, 0, 40, 0, 0, 0, 0, 0)
    data = b"".join([pack_session(Session("carol", "pts/1", "", 10)),
                     pack_session(Session("carol", "pts/2", "h", 20)),
                     pack_session(Session("caroline", "pts/3", "", 30)), logout])
    assert last_session(data + b"\0" * 100, "carol") == Session("carol", "pts/2", "h", 20)
    assert last_session(data, "dave") is None
    assert last_session(b"", "carol") is None


@given(st.binary(max_size=2000), st.text(min_size=1, max_size=32))
def test_any_bytes_give_a_last_session_or_none(data, user):
    found = last_session(data, user)
    assert found is None or found.user == user
