"""The RFC 1288 query grammar."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.query import Query, parse_query
from fingerd.outcomes import FORWARDING, LIST, USER, VERBOSE


def test_plain_user():
    assert parse_query(b"alice") == Query(False, "alice", ())


def test_empty_line_is_a_list_query():
    assert parse_query(b"").kind == LIST


def test_blank_line_is_a_list_query():
    assert parse_query(b"  \t ") == Query(False, "", ())


def test_verbose_list_with_trailing_space_as_the_debian_client_sends():
    assert parse_query(b"/W ") == Query(True, "", ())


def test_verbose_alone():
    assert parse_query(b"/W") == Query(True, "", ())


def test_verbose_user():
    assert parse_query(b"/W alice") == Query(True, "alice", ())


def test_verbose_in_lower_case_and_several_spaces():
    assert parse_query(b"/w   alice  ") == Query(True, "alice", ())


def test_verbose_token_glued_to_a_name_is_just_a_name():
    assert parse_query(b"/Walice") == Query(False, "/Walice", ())


def test_option_like_names_are_names():
    assert parse_query(b"-l alice").user == "-l alice"


def test_forward_query():
    assert parse_query(b"alice@example.org") == Query(False, "alice", ("example.org",))


def test_forward_list_query():
    query = parse_query(b"@example.org")
    assert query == Query(False, "", ("example.org",))
    assert query.kind == FORWARDING


def test_verbose_forward_query():
    assert parse_query(b"/W alice@a") == Query(True, "alice", ("a",))


def test_any_number_of_hosts_in_order_written():
    assert parse_query(b"u@a@b@c").hosts == ("a", "b", "c")


def test_user_kind():
    assert parse_query(b"bob").kind == USER
    assert parse_query(b"/W bob").kind == VERBOSE


@given(st.binary(max_size=2048))
def test_any_bytes_parse(line):
    query = parse_query(line)
    assert isinstance(query.user, str)
    assert all(isinstance(h, str) for h in query.hosts)


NAMES = st.from_regex(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}", fullmatch=True)
HOSTS = st.lists(st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True), max_size=4)


@given(st.booleans(), NAMES, HOSTS)
def test_written_query_parses_back(verbose, name, hosts):
    line = ("/W " if verbose else "") + name + "".join("@" + h for h in hosts)
    assert parse_query(line.encode()) == Query(verbose, name, tuple(hosts))
