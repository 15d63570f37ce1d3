"""The users file format."""

from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.users import usersfile
from fingerd.users.usersfile import (
    UsersFileError,
    check_users,
    is_valid_name,
    parse_users,
    splice_status,
    status_problem,
    with_status,
)
from tests.support.fuzzing import tokens
from tests.support.users_files import NAMES, STATUSES, TABLES, valid_files


def format_users(users):
    """The bytes of a users file holding exactly ``users``."""
    return "".join(f"{name}:{status}\n" for name, status in users.items()).encode("utf-8")


def test_entries_comments_and_blank_lines():
    data = b"# a comment\n\nalice:Happy\n  # indented comment\nbob:\n"
    assert parse_users(data) == {"alice": "Happy", "bob": ""}


def test_split_at_first_colon():
    assert parse_users(b"alice:at 10:30: lunch\n") == {"alice": "at 10:30: lunch"}


def test_crlf_line_endings():
    assert parse_users(b"alice:Happy\r\nbob:Sad\r\n") == {"alice": "Happy", "bob": "Sad"}


def test_no_final_newline():
    assert parse_users(b"alice:Happy") == {"alice": "Happy"}


def test_utf8_status():
    assert parse_users("alice:Grüße ☕\n".encode()) == {"alice": "Grüße ☕"}


def test_status_keeps_its_blanks():
    assert parse_users(b"alice:  spaced  \n") == {"alice": "  spaced  "}


def test_status_with_tab_is_valid():
    assert parse_users(b"alice:a\tb\n") == {"alice": "a\tb"}


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "x" * 32, "_x", ".x", "0"])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "-x", "x" * 33, "a b", "a/b", "é", "a:b", "a\n"])
def test_invalid_names(name):
    assert not is_valid_name(name)


def errors_of(data):
    with pytest.raises(UsersFileError) as info:
        parse_users(data, "/etc/fingerd/users")
    return str(info.value)


def test_line_without_colon_names_file_and_line():
    assert errors_of(b"alice:ok\n# c\nbroken\n") == "/etc/fingerd/users:3: expected user:status"


def test_invalid_name_is_an_error():
    assert errors_of(b"-alice:x\n").startswith("/etc/fingerd/users:1: invalid user name")


def test_duplicate_user_is_an_error():
    assert errors_of(b"alice:x\nalice:y\n") == \
        "/etc/fingerd/users:2: duplicate user alice (first on line 1)"


def test_invalid_utf8_names_its_line():
    assert errors_of(b"alice:x\nbob:\xff\n") == "/etc/fingerd/users:2: not valid UTF-8"


@pytest.mark.parametrize("status", ["a\rb", "\x1b[2J", "a\x00", "a\x85b", "\x7f"])
def test_control_characters_in_a_status_are_errors(status):
    assert "control character" in errors_of(f"alice:{status}\n".encode())


def test_lone_cr_cannot_hide_a_second_entry():
    assert "control character" in errors_of(b"alice:back\rbob:HIJACKED\n")


def test_unicode_line_separators_do_not_split_entries():
    data = "alice:hi\x1ceve:pwned\u2028mallory:x\n".encode()
    assert "control character" in errors_of(data)
    assert parse_users("alice:a\u2028b:c\n".encode()) == {"alice": "a\u2028b:c"}


def test_status_longer_than_256_bytes_is_an_error():
    assert "longer than 256 bytes" in errors_of(b"alice:" + "é".encode() * 129 + b"\n")
    assert parse_users(b"alice:" + "é".encode() * 128 + b"\n")


def test_every_bad_line_is_reported():
    message = errors_of(b"a\nb\nc:ok\nd\n")
    assert message.splitlines() == [f"/etc/fingerd/users:{n}: expected user:status"
                                    for n in (1, 2, 4)]


def test_status_problem_accepts_a_plain_status():
    assert status_problem("Out to lunch") is None


def test_with_status_replaces_in_place_keeping_comments_and_endings():
    data = b"# team\r\nalice:old\r\n\nbob:x\n"
    assert with_status(data, "alice", "new") == b"# team\r\nalice:new\r\n\nbob:x\n"


def test_with_status_appends_a_new_user():
    assert with_status(b"alice:x", "bob", "y") == b"alice:x\nbob:y\n"
    assert with_status(b"", "bob", "y") == b"bob:y\n"


def test_with_status_refuses_an_invalid_file():
    with pytest.raises(UsersFileError):
        with_status(b"broken\n", "alice", "x")


#: What users files are made of: entries good and bad, comments, blanks, control and
#: separator characters, long names and statuses, invalid UTF-8.
LINES = ["alice:x", "bob:y", "# c", "", "  ", "bad", "-x:y", "a b:c", "alice:z", "c:\x1b",
         "d:\u2028", "e:\r", "x" * 33 + ":y", "f:" + "é" * 200, "  # indented", "\t", ":x",
         "g:a:b", "h:#", "i: spaced ", "j:\t", "k:\x85", "l:\ufeff", "é:x", "m:\x00",
         "n:" + "z" * 256]


def joined(lines, ending, final):
    return (ending.join(lines) + (ending if final else "")).encode()


FILES = st.one_of(
    st.binary(max_size=4096),
    st.builds(joined, st.lists(st.sampled_from(LINES), max_size=12),
              st.sampled_from(["\n", "\r\n"]), st.booleans()),
    tokens([b"alice", b"bob", b":", b"#", b" ", b"\t", b"\n", b"\r\n", b"\r", b"\x00", b"\xff",
            b"\xc2\x85", b"\xe2\x80\xa8", b"\xed\xa0\x80", b"-", b"x" * 40]))


@given(FILES)
def test_any_bytes_either_parse_or_raise_users_file_error(data):
    try:
        users = parse_users(data)
    except UsersFileError as exc:
        assert 1 <= len(exc.errors) <= usersfile.MAX_REPORTED_ERRORS
        assert all(1 <= line <= data.count(b"\n") + 1 for line, _ in exc.errors)
    else:
        assert all(is_valid_name(name) for name in users)
        assert all(status_problem(status) is None for status in users.values())




@given(TABLES)
def test_a_file_written_from_a_table_parses_back_to_it(table):
    assert parse_users(format_users(table)) == table


@given(TABLES, NAMES, STATUSES)
def test_with_status_sets_exactly_one_entry(table, name, status):
    expected = dict(table)
    expected[name] = status
    assert parse_users(with_status(format_users(table), name, status)) == expected


@given(FILES, st.one_of(st.sampled_from(["alice", "bob", "g"]), NAMES), STATUSES)
def test_with_status_changes_one_line_of_any_valid_file_and_refuses_others(data, name, status):
    """Comments, blank lines, order and line endings of every other line are kept."""
    try:
        users = parse_users(data)
    except UsersFileError:
        with pytest.raises(UsersFileError):
            with_status(data, name, status)
        return
    new = with_status(data, name, status)
    assert parse_users(new) == {**users, name: status}
    old_lines, new_lines = data.split(b"\n"), new.split(b"\n")
    if name in users:
        changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
        assert len(old_lines) == len(new_lines) and len(changed) == 1
        ending = b"\r" if old_lines[changed[0]].endswith(b"\r") else b""
        assert new_lines[changed[0]] == f"{name}:{status}".encode() + ending
    else:
        kept = data + (b"\n" if data and not data.endswith(b"\n") else b"")
        assert new == kept + f"{name}:{status}\n".encode()


@given(FILES, st.sampled_from([16, 64, usersfile.CHUNK_BYTES]))
def test_fast_and_line_by_line_readings_agree(data, chunk_bytes):
    """The fast reading, a chunk at a time, gives up or finds what the slow one does."""
    try:
        expected = usersfile._parse_lines(data.decode("utf-8"), "users")
    except (UnicodeDecodeError, UsersFileError):
        expected = None
    with mock.patch.object(usersfile, "CHUNK_BYTES", chunk_bytes):
        fast = usersfile._parse_fast(data)
        assert fast is None or fast == expected
        assert (parse_users(data) if expected is not None else None) == expected


def test_a_file_larger_than_a_chunk_reads_whole(monkeypatch):
    monkeypatch.setattr(usersfile, "CHUNK_BYTES", 64)
    data = b"".join(b"u%d:s%d\n" % (i, i) for i in range(500))
    users = parse_users(data)
    assert len(users) == 500 and users["u499"] == "s499"
    with pytest.raises(UsersFileError, match="duplicate user u1"):
        parse_users(data + b"u1:again\n")


@pytest.mark.parametrize("data, name, status, expected", [
    (b"alice:old\nbob:x\n", "alice", "new", b"alice:new\nbob:x\n"),
    (b"alice:old\nbob:x\n", "bob", "new", b"alice:old\nbob:new\n"),
    (b"# team\r\nalice:old\r\n\nbob:x\n", "alice", "new", b"# team\r\nalice:new\r\n\nbob:x\n"),
    (b"alice:old\r", "alice", "new", b"alice:new\r"),
    (b"alice:old", "alice", "new", b"alice:new"),
    (b"alice:", "alice", "", b"alice:"),
    (b"alice:x", "bob", "y", b"alice:x\nbob:y\n"),
    (b"alice:x\r", "bob", "y", b"alice:x\r\nbob:y\n"),
    (b"", "bob", "y", b"bob:y\n"),
    (b"# only a comment\n", "bob", "y", b"# only a comment\nbob:y\n"),
])
def test_splice_sets_one_line_as_with_status_does(data, name, status, expected):
    assert splice_status(data, name, status) == expected
    assert with_status(data, name, status) == expected


@pytest.mark.parametrize("data", [
    b"al:x\nalice:old\n",             # a name that is the start of another's
    b"xalice:x\nalice:old\n",         # a name that ends with another
    b"# alice:comment\nalice:old\n",  # the name in a comment
    b"  # alice:indented\nalice:old\n",
    b"bob:alice:x\nalice:old\n",      # the name in another's status
    b"bob:x\n\nalice:old\n",
    b"Alice:x\nalice:old\n",          # names are case-sensitive
])
def test_splice_finds_the_entry_not_a_look_alike(data):
    assert splice_status(data, "alice", "new") == data.replace(b"alice:old", b"alice:new")


def test_splice_keeps_a_status_with_colons_and_non_ascii():
    assert splice_status(b"alice:x\n", "alice", "at 10:30: Grüße ☕") == \
        "alice:at 10:30: Grüße ☕\n".encode()


@given(valid_files(), st.data(), STATUSES)
def test_splice_equals_with_status_on_valid_files(file, data, status):
    content, table = file
    names = st.sampled_from(sorted(table)) if table else NAMES
    name = data.draw(st.one_of(names, NAMES))
    assert parse_users(content) == table
    assert splice_status(content, name, status) == with_status(content, name, status)


@given(st.binary(max_size=512), NAMES, STATUSES)
def test_splice_equals_with_status_on_any_bytes_that_parse(content, name, status):
    try:
        expected = with_status(content, name, status)
    except UsersFileError:
        return
    assert splice_status(content, name, status) == expected


def outcome(check, data):
    try:
        check(data, "users")
    except UsersFileError as exc:
        return str(exc)
    return None


@given(st.lists(st.sampled_from(["alice:x", "bob:y", "# c", "", "  ", "bad", "-x:y", "a b:c",
                                 "alice:z", "c:\x1b", "d:\u2028", "e:\r", "x" * 33 + ":y",
                                 "f:" + "é" * 200, "g:\xff"]), max_size=12),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_check_users_refuses_exactly_what_parse_users_refuses(lines, ending, final):
    data = (ending.join(lines) + (ending if final else "")).encode()
    assert outcome(check_users, data) == outcome(parse_users, data)


@given(st.binary(max_size=512))
def test_check_users_agrees_with_parse_users_on_any_bytes(data):
    assert outcome(check_users, data) == outcome(parse_users, data)


def test_check_users_finds_a_duplicate_across_chunks(monkeypatch):
    monkeypatch.setattr(usersfile, "CHUNK_BYTES", 64)
    data = b"".join(b"u%d:s%d\n" % (i, i) for i in range(500))
    check_users(data)
    with pytest.raises(UsersFileError, match="duplicate user u1 "):
        check_users(data + b"u1:again\n")
