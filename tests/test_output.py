"""What may reach the wire."""

from hypothesis import given, strategies as st

from fingerd.output import sanitize, wire_lines, wire_text


def test_tab_and_printable_text_pass():
    assert sanitize("Out\tto lunch ☕ Grüße") == "Out\tto lunch ☕ Grüße"


def test_escape_sequences_lose_their_escape():
    assert sanitize("\x1b]0;owned\x07\x1b[31mred") == "]0;owned[31mred"


def test_c1_controls_and_bidi_overrides_are_removed():
    assert sanitize("a\u009bb\u202ec\u2066d\x7f") == "abcd"


def test_lines_end_in_crlf():
    assert wire_lines(["a", "b"]) == b"a\r\nb\r\n"


def test_any_line_endings_become_crlf():
    assert wire_text("a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd\r\n"


def test_empty_text_sends_nothing():
    assert wire_text("") == b""


@given(st.text())
def test_nothing_but_tab_cr_lf_below_space_ever_reaches_the_wire(text):
    data = wire_text(text)
    assert not any(b < 0x20 and b not in (9, 10, 13) for b in data)
    assert b"\x7f" not in data
    assert all(line.endswith(b"\r") for line in data.split(b"\n")[:-1])
    assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")
