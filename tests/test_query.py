"""The RFC 1288 query grammar: parse_query in finger/answer.py."""

import string

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import Query, parse_query
from fingerd.outcomes import FORWARDING, LIST, USER, VERBOSE
from tests.support.fuzzing import NAMES, tokens


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


#: What query lines are made of, for lines that reach the grammar's corners more often
#: than random bytes do: ``/W`` in either case, blanks, ``@`` chains, NUL, bytes of
#: UTF-8 and not, an RLO, a vertical tab (a blank to str.split, not to the grammar).
LINES = st.one_of(st.binary(max_size=2048),
                  tokens([b"/W", b"/w", b"/", b"W", b" ", b"\t", b"@", b"@@", b"alice", b"bob",
                          b"example.org", b"-l", b"\x00", b"\xff", b"\xc3\xa9", b"\xe2\x80\xae",
                          b"\r", b"\x0b", b":"]))


def written(query):
    """A query line as a client writes ``query``."""
    line = ("/W " if query.verbose else "") + query.user + "".join("@" + h for h in query.hosts)
    return line.encode("latin-1")


@given(LINES)
def test_any_bytes_parse_and_read_back_the_same(line):
    query = parse_query(line)
    assert isinstance(query.user, str)
    assert all(isinstance(h, str) for h in query.hosts)
    assert "@" not in query.user and not any("@" in h for h in query.hosts)
    assert (query.kind == FORWARDING) == (b"@" in line)
    assert parse_query(written(query)) == query
    assert parse_query(b" \t" + line + b"\t ") == query, "blanks around a query do not count"


HOSTS = st.lists(st.text(string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=20),
                 max_size=4)


@given(st.booleans(), NAMES, HOSTS)
def test_written_query_parses_back(verbose, name, hosts):
    query = Query(verbose, name, tuple(hosts))
    assert parse_query(written(query)) == query
