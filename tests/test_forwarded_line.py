"""The line a forwarded query sends upstream (forwarded_line in finger/forward.py): the
user part as the client's own bytes, or nothing when it holds a control character."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import parse_query
from fingerd.finger.forward import forwarded_line


def sent(data):
    return forwarded_line(parse_query(data))


def test_the_user_part_goes_upstream_as_the_client_sent_it():
    assert sent(b"ren\xe9@host") == b"ren\xe9"
    assert sent("jürgen@host".encode()) == "jürgen".encode()
    assert sent(b"/w  alice bob @host") == b"/W alice bob "
    assert sent(b"a\tb@host") == b"a\tb"
    assert sent(b"/W @host") == b"/W "


def test_a_user_part_holding_a_control_character_is_not_sent():
    for user in (b"a\rb", b"a\x00b", b"\x1b[2Ja", b"a\x7f", b"a\x0bb", b"/W a\x1f"):
        assert sent(user + b"@host") is None, user


def by_hand(user):
    """What a user part written before ``@host`` is sent as, read from RFC 1288's {Q2}:
    blanks before it dropped, a ``/W`` token and its blanks made ``/W ``."""
    head = user.lstrip(b" \t")
    if head[:2] in (b"/W", b"/w") and head[2:3] in (b"", b" ", b"\t"):
        head = b"/W " + head[2:].lstrip(b" \t")
    if any(byte < 0x20 and byte != 0x09 or byte == 0x7F for byte in head):
        return None
    return head


@given(st.binary(max_size=60).map(lambda user: user.replace(b"@", b"")))
def test_any_user_part_is_sent_as_its_own_bytes_or_not_at_all(user):
    assert sent(user + b"@host") == by_hand(user)
