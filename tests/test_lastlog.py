"""Parsing lastlog records."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.lastlog import RECORD, parse_lastlog, record_offset
from tests.support.utmp import pack_lastlog


def test_record_is_glibc_size_and_indexed_by_uid():
    assert RECORD.size == 292
    assert record_offset(1000) == 292000


def test_a_record_gives_line_host_and_time():
    assert parse_lastlog(pack_lastlog("pts/3", "192.0.2.7", 1700000000)) == \
        ("pts/3", "192.0.2.7", 1700000000)


def test_a_record_never_written_or_cut_short_is_no_login():
    assert parse_lastlog(b"\0" * 292) is None
    assert parse_lastlog(pack_lastlog("tty1", "", 5)[:291]) is None
    assert parse_lastlog(b"") is None


@given(st.binary(max_size=600))
def test_any_bytes_parse_to_a_login_or_none(data):
    found = parse_lastlog(data)
    assert found is None or (isinstance(found[0], str) and found[2] != 0)
