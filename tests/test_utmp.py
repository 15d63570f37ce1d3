"""Parsing utmp records."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.utmp import RECORD, Session, parse_utmp
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
