"""The long answer's layout, line by line as Debian's in.fingerd (netkit finger 0.17) prints it.

The expected lines were printed by in.fingerd for the same GECOS strings,
sessions and times (TZ=UTC); tests/test_debian_longform.py compares the two
servers end to end.
"""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.longform import (
    Gecos,
    Mail,
    Person,
    Where,
    file_lines,
    idle_text,
    long_answer,
    mail_lines,
    office_lines,
    parse_gecos,
    phone,
    where_lines,
)

NOW = 1795672213  # Thu Nov 26 05:50:13 2026 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("number, shown", [
    ("5551234", "555-1234"), ("5559876543", "555-987-6543"), ("15551234567", "+1-555-123-4567"),
    ("12345", "x1-2345"), ("1234", "x1234"), ("22", "22"), ("+1 555 123 4567", "+1 555 123 4567"),
    ("555-1234", "555-1234"), ("١٢٣٤", "١٢٣٤"),
])
def test_phone_numbers_get_in_fingerds_dashes(number, shown):
    assert phone(number) == shown


@pytest.mark.parametrize("gecos, lines", [
    ("Ada,Room 1,,,", ["Office: Room 1"]),
    (",,5551234,,", ["Office Phone: 555-1234"]),
    ("Ada Lovelace,Room 1,555-1234,555-9876,other",
     ["Office: Room 1, 555-1234\t\tHome Phone: 555-9876"]),
    ("A,Room 101 Long Building Name,+1 555 123 4567,5559876543,x",
     ["Office: Room 101 Long Building Name\tOffice Phone: +1 555 123 4567",
      "Home Phone: 555-987-6543"]),
    ("A,,,12345", ["Home Phone: x1-2345"]),
    ("A,R,15551234567,1234", ["Office: R, +1-555-123-4567\t\tHome Phone: x1234"]),
    ("A,Office,,5551234", ["Office: Office\t\t\t\tHome Phone: 555-1234"]),
    ("& Person,a very long office name that goes on and on,5551234,5559999",
     ["Office: a very long office name that goes on and on\tOffice Phone: 555-1234",
      "Home Phone: 555-9999"]),
    ("A,,22,333", ["Office Phone: 22\t\t\tHome Phone: 333"]),
    ("Ann,,,,", []),
    ("", []),
])
def test_office_and_phones_are_laid_out_as_in_fingerd_does(gecos, lines):
    assert office_lines(parse_gecos(gecos, "slw2")) == lines


def test_a_field_too_wide_to_pair_starts_a_line_of_its_own():
    gecos = Gecos("A", "", "1" * 30, "2" * 40)
    assert office_lines(gecos) == ["Office Phone: " + "1" * 30, "Home Phone: " + "2" * 40]


def test_ampersand_in_the_name_is_the_login_capitalised():
    assert parse_gecos("& Person,a,b,c,d,e", "slw2") == Gecos("Slw2 Person", "a", "b", "c")


@pytest.mark.parametrize("seconds, text", [
    (0, ""), (30, "30 seconds idle"), (3000, "50 minutes idle"),
    (4000, "1 hour 6 minutes idle"), (3599, "59 minutes 59 seconds idle"),
    (7200, "2 hours idle"), (86460, "1 day idle"),
    (86400 * 5 + 3600 * 3 + 120, "5 days 3 hours idle"), (-5, ""),
])
def test_idle_time_counts_the_two_largest_units(seconds, text):
    assert idle_text(seconds) == text


def session(line, host, idle, writable=True):
    return Where(line, host, NOW - 480, idle, writable)


def test_sessions_wrap_idle_after_a_host_and_pad_to_the_longest_line():
    """in.fingerd's output for these sessions, /dev/LINE modes and atimes set."""
    sessions = (session("slwA", "", 30), session("slwBB", "h.example", 3000),
                session("slwC", "h", 0, False), session("slwD", "", 4000, False),
                session("slwE", "host.example.org", 86460, False))
    assert where_lines(sessions, None, NOW) == [
        "On since Thu Nov 26 05:42 (UTC) on slwA    30 seconds idle",
        "On since Thu Nov 26 05:42 (UTC) on slwBB from h.example",
        "   50 minutes idle",
        "On since Thu Nov 26 05:42 (UTC) on slwC from h (messages off)",
        "On since Thu Nov 26 05:42 (UTC) on slwD    1 hour 6 minutes idle",
        "     (messages off)",
        "On since Thu Nov 26 05:42 (UTC) on slwE from host.example.org",
        "    1 day idle",
        "     (messages off)",
    ]



def test_a_line_break_in_utmp_starts_no_line_of_its_own():
    """A host (from a remote host's DNS) or a terminal holding a line break stays within
    its session's line, for the output rules to clean: it cannot forge a ``Login:``."""
    forged = "\nLogin: root\t\t\tName: forged"
    lines = where_lines((session("pts/9", "evil.example" + forged, 0),
                         session("pts/1" + forged, "", 30, False)), None, NOW)
    assert len(lines) == 3 and not any(line.startswith("Login") for line in lines), lines

def test_never_logged_in_without_sessions_or_last_login():
    assert where_lines((), None, NOW) == ["Never logged in."]


def test_last_login_has_its_year_only_when_older_than_half_a_year():
    recent = Where("pts/3", "192.0.2.7", NOW - 3600)
    old = Where("tty2", "", NOW - 86400 * 200)
    assert where_lines((), recent, NOW) == \
        ["Last login Thu Nov 26 04:50 (UTC) on pts/3 from 192.0.2.7"]
    assert where_lines((), old, NOW) == ["Last login Sun May 10 05:50 2026 (UTC) on tty2"]


def test_last_login_beside_sessions_only_when_later_and_on_another_line():
    on = session("pts/9", "", 0)
    later_elsewhere = Where("tty2", "", NOW - 100)
    assert where_lines((on,), later_elsewhere, NOW)[-1] == \
        "Last login Thu Nov 26 05:48 (UTC) on tty2"
    assert len(where_lines((on,), Where("pts/9", "", NOW - 100), NOW)) == 1
    assert len(where_lines((on,), Where("tty2", "", NOW - 900), NOW)) == 1
    assert len(where_lines((on,), None, NOW)) == 1


def test_mail_states():
    assert mail_lines(None) == ["No mail."]
    assert mail_lines(Mail(received=NOW - 600, read=NOW - 7200)) == [
        "New mail received Thu Nov 26 05:40 2026 (UTC)",
        "     Unread since Thu Nov 26 03:50 2026 (UTC)"]
    assert mail_lines(Mail(received=NOW - 86400 * 300, read=NOW - 60)) == \
        ["Mail last read Thu Nov 26 05:49 2026 (UTC)"]


def test_files_come_pgp_key_project_plan_then_others_and_no_plan_when_missing():
    files = ((".plan", ("Plan text\n", False)), (".project", ("no newline", False)),
             (".pgpkey", ("KEY\n", False)), (".motto", ("carpe diem\n", True)))
    assert file_lines(files, 10) == ["PGP key:", "KEY", "Project:", "no newline", "Plan:",
                                     "Plan text", ".motto:", "carpe diem",
                                     "(.motto cut at 10 bytes)"]
    assert file_lines(((".plan", None), (".project", None)), 10) == ["No Plan."]
    assert file_lines(((".plan", ("", False)),), 10) == ["Plan:", ""]
    assert file_lines((), 10) == []


def test_whole_answer_for_an_account_without_gecos_logins_mail_or_plan():
    person = Person("slw2", parse_gecos("", "slw2"), "/tmp/slw/h2", "",
                    files=((".plan", None),))
    assert long_answer(person, NOW) == [
        "Login: slw2           \t\t\tName: ",
        "Directory: /tmp/slw/h2              \tShell: /bin/sh",
        "Never logged in.", "No mail.", "No Plan."]


def test_times_out_of_range_are_shown_as_such():
    assert mail_lines(Mail(received=2**62, read=0))[0] == \
        "New mail received (time out of range)"


def test_a_line_break_in_a_gecos_field_is_left_out():
    fields = parse_gecos("Ada\nLovelace,Room\r\n1,\u2028555\x001234,", "ada")
    assert fields == parse_gecos("AdaLovelace,Room1,5551234,", "ada")
    assert office_lines(parse_gecos(",\n", "x")) == []


@given(st.text(max_size=300), st.text(min_size=1, max_size=32))
def test_any_gecos_parses_and_lays_out(gecos, login):
    fields = parse_gecos(gecos, login)
    for line in office_lines(fields):
        assert "\n" not in line
