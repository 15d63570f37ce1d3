"""What the finger service answers, without sockets."""

from fingerd.finger import answer, user_list
from fingerd.query import parse_query

USERS = {"alice": "Happy and well", "bob": "Sleeping", "eve": "x\u202ey"}


def ask(line, list_users=False):
    return answer(parse_query(line), USERS, list_users)


def test_known_user():
    assert ask(b"alice") == ("found", b"Happy and well\r\n")


def test_verbose_known_user():
    assert ask(b"/W alice") == ("found", b"Happy and well\r\n")


def test_unknown_user():
    assert ask(b"carol") == ("not_found", b"No such user\r\n")


def test_names_are_case_sensitive():
    assert ask(b"Alice")[1] == b"No such user\r\n"


def test_list_denied_by_default():
    assert ask(b"") == ("refused", b"Finger online user list denied\r\n")
    assert ask(b"/W ") == ("refused", b"Finger online user list denied\r\n")


def test_list_when_allowed():
    assert ask(b"", list_users=True) == (
        "listed", b"alice: Happy and well\r\nbob: Sleeping\r\neve: xy\r\n")


def test_forwarding_denied():
    for line in (b"alice@host", b"@host", b"/W a@b@c"):
        assert ask(line) == ("refused", b"Finger forwarding service denied\r\n")


def test_status_is_filtered_on_the_way_out():
    assert ask(b"eve")[1] == b"xy\r\n"


def test_list_is_cut_with_a_note():
    users = {f"u{i}": "s" * 50 for i in range(5000)}
    data = user_list(users, limit=4096)
    lines = data.split(b"\r\n")
    assert len(data) <= 4096 + 100
    assert lines[-2].endswith(b"more users not shown)")
