"""What may reach the wire."""

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from fingerd.config_keys import HIGH_BYTES_POLICIES
from fingerd.finger import output
from fingerd.finger.output import (
    CHECKED_UNICODE,
    INVISIBLE_RUNS,
    LATER_INVISIBLE,
    Renderer,
    caret,
    invisible_points,
    sanitize,
    scan_invisible,
    split_lines,
)
from fingerd.limits import MAX_REPLACED_LINE_CHARS
from tests.support.invisible import INVISIBLE


def wire_lines(lines):
    return Renderer().render(lines)


def wire_text(text):
    return Renderer().render(split_lines(text))


def test_tab_and_printable_text_pass():
    assert sanitize("Out\tto lunch ☕ Grüße") == "Out\tto lunch ☕ Grüße"


def test_escape_sequences_lose_their_escape():
    assert sanitize("\x1b]0;owned\x07\x1b[31mred") == "]0;owned[31mred"


def test_c1_controls_and_bidi_overrides_are_removed():
    assert sanitize("a\u009bb\u202ec\u2066d\x7f") == "abcd"


def test_separators_direction_marks_and_bom_are_removed():
    assert sanitize("a\u2028b\u2029c\u200ed\u200fe\u061cf\ufeffg") == "abcdefg"
    assert Renderer(high_bytes="pass").render(["x\u2028y\ufeff"]) == b"xy\r\n"


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


def test_caret_shows_utf8_bytes_as_cat_v_does():
    assert caret("é") == "M-CM-)"
    assert caret("a\u00ffb") == "aM-CM-?b"


def test_renderer_policies():
    assert Renderer(high_bytes="strip").render(["Grüße ☕!"]) == b"Gre !\r\n"
    assert Renderer(high_bytes="caret").render(["é"]) == b"M-CM-)\r\n"
    assert Renderer().render(["é"]) == "é\r\n".encode()


def test_replacements_apply_in_order_and_cannot_add_controls():
    renderer = Renderer([("secret", "[redacted]"), ("[redacted]", "XX"), ("bell", "\x07")])
    assert renderer.render(["a secret bell"]) == b"a XX \r\n"


@given(st.text(), st.sampled_from(HIGH_BYTES_POLICIES))
def test_no_policy_lets_a_control_character_through(text, policy):
    data = Renderer(high_bytes=policy).render([text])
    assert not any(b < 0x20 and b not in (9, 10, 13) for b in data)
    if policy != "pass":
        assert all(b < 0x80 for b in data)


def test_a_lone_surrogate_becomes_the_replacement_character():
    # What a GECOS in Latin-1 becomes once Python decodes it with surrogateescape.
    assert sanitize("J\udcf6rg") == "J\ufffdrg"
    for policy in HIGH_BYTES_POLICIES:
        assert Renderer(high_bytes=policy).render(["J\udcf6rg\ud800"]).decode("utf-8") == \
            Renderer(high_bytes=policy).render(["J\ufffdrg\ufffd"]).decode("utf-8")


@given(st.text(st.characters(exclude_categories=())), st.sampled_from(HIGH_BYTES_POLICIES))
def test_any_string_is_rendered_surrogates_included(text, policy):
    assert Renderer(high_bytes=policy).render([text]).decode("utf-8").endswith("\r\n")


def test_every_format_character_and_separator_is_removed():
    assert len(INVISIBLE) >= 172
    assert sanitize("a" + "".join(INVISIBLE) + "b") == "ab"
    for policy in HIGH_BYTES_POLICIES:
        assert Renderer(high_bytes=policy).render(["x" + "y".join(INVISIBLE)]) == \
            b"x" + b"y" * (len(INVISIBLE) - 1) + b"\r\n"


def test_the_kept_runs_are_this_pythons_invisible_characters():
    """Run on Python 3.9 (tests/test_python39.py), 3.11 and 3.13 (tests/test_debian13.py):
    Unicode 13.0, 14.0 and 15.1."""
    points = invisible_points()
    assert points == sorted(set(points))
    assert all(last + 1 < first for (_, last), (first, _) in zip(INVISIBLE_RUNS,
                                                                 INVISIBLE_RUNS[1:]))
    assert set(points) == set(scan_invisible()) | set(LATER_INVISIBLE)
    assert {chr(point) for point in points} == set(INVISIBLE)


def test_a_newer_unicode_database_is_read_whole(monkeypatch):
    scans = []
    monkeypatch.setattr(output, "scan_invisible",
                        lambda: scans.append(1) or scan_invisible())
    newer = ".".join(map(str, (CHECKED_UNICODE[0] + 1, 0, 0)))
    assert set(invisible_points(newer)) == set(invisible_points())
    assert scans == [1]
    assert invisible_points(".".join(map(str, CHECKED_UNICODE))) == invisible_points()
    assert scans == [1]


def test_the_invisible_characters_the_attack_used_are_among_them():
    shown = ("zero\u200bwidth\u200cjoin\u200d soft\u00adhyphen word\u2060joiner "
             "\u206a\u206f\ufff9\ufffb\U000e0001tag\U000e0041\U000e007f")
    assert sanitize(shown) == "zerowidthjoin softhyphen wordjoiner tag"


def visible(char):
    return char == "\t" or (unicodedata.category(char) != "Cc" and char not in INVISIBLE)


@given(st.lists(st.one_of(st.text(), st.sampled_from(INVISIBLE)), max_size=40).map("".join),
       st.sampled_from(HIGH_BYTES_POLICIES))
def test_no_format_character_or_separator_ever_reaches_the_wire(text, policy):
    wire = Renderer(high_bytes=policy).render(split_lines(text)).decode("utf-8")
    assert all(visible(char) for char in wire.replace("\r\n", ""))
    if policy == "pass":
        assert wire.replace("\r\n", "") == "".join(filter(visible, text))


def test_a_replacement_cannot_add_an_invisible_character():
    assert Renderer([("smile", "\u200b\u202e:)")]).render(["smile"]) == b":)\r\n"


def test_replacements_never_make_a_line_longer_than_the_bound():
    """Each rule's result is cut at MAX_REPLACED_LINE_CHARS: twelve rules doubling each
    'a' would make a status of 256 of them a line of a million characters."""
    renderer = Renderer([("a", "aa")] * 12)
    assert renderer.render(["a" * 256]) == b"a" * MAX_REPLACED_LINE_CHARS + b"\r\n"
    assert renderer.render(["b"]) == b"b\r\n"
