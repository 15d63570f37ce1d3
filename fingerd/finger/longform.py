"""The long answer (``/W``) for a system account, laid out as Debian's in.fingerd lays it out.

Pure: the facts about an account (GECOS, sessions, last login, mail, plan
files) are gathered elsewhere and handed in, with the time of the answer,
so the layout is tested line by line against in.fingerd's without a clock,
accounts or files. in.fingerd (netkit finger 0.17) is the anchor: its tabs,
its spacing and its wording are kept, the control characters it shows as
``^X`` are left to the output rules, which remove them.
"""

import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from fingerd.finger.homefiles import Found
from fingerd.finger.output import split_lines

#: How a home file is introduced, in the order in.fingerd shows them; other
#: configured files follow, titled by their name.
FILE_TITLES = {".pgpkey": "PGP key:", ".project": "Project:", ".plan": "Plan:"}

#: Older than this, a last login is shown with its year (in.fingerd: half a year).
HALF_YEAR = 86400 * 365 // 2

#: in.fingerd's line width and tab stops, for the office and phone fields.
LINE_LEN = 80
TAB_LEN = 8


@dataclass(frozen=True)
class Gecos:
    """The fields of a GECOS string that finger shows; empty when absent."""

    name: str
    office: str
    office_phone: str
    home_phone: str


@dataclass(frozen=True)
class Where:
    """A login session, with its terminal's idle seconds and whether write(1) reaches
    it, or the last login (which has neither)."""

    line: str
    host: str
    time: int
    idle: int = 0
    writable: bool = True


@dataclass(frozen=True)
class Mail:
    """The spool's times: last delivery (mtime) and last read (atime)."""

    received: int
    read: int


@dataclass(frozen=True)
class Person:
    """What the long answer shows of an account.

    ``files`` holds ``(name, found)`` pairs, ``found`` being ``(text, cut)``
    or None; ``mail`` is None when the spool is missing or empty.
    """

    login: str
    gecos: Gecos
    home: str
    shell: str
    sessions: tuple[Where, ...] = ()
    last_login: Optional[Where] = None
    mail: Optional[Mail] = None
    files: tuple[tuple[str, Found], ...] = ()
    max_bytes: int = 0


def parse_gecos(gecos: str, login: str) -> Gecos:
    """Name, office, office phone and home phone: the first four comma-separated fields,
    ``&`` in the name standing for the login capitalised. A field from NSS (LDAP) may
    hold a line break or another control character: each is left out, so that a field
    stays on its line."""
    fields = (_one_line(gecos).split(",") + ["", "", ""])[:4]
    return Gecos(fields[0].replace("&", login.capitalize()), *fields[1:])


def _one_line(text: str) -> str:
    return "".join(ch for ch in text
                   if unicodedata.category(ch) not in ("Cc", "Zl", "Zp"))


def phone(number: str) -> str:
    """A phone number as in.fingerd shows it: all-digit numbers of 4, 5, 7, 10 or 11
    digits get their dashes (``x1234``, ``x1-2345``, ``555-1234``, ``555-123-4567``,
    ``+1-555-123-4567``); anything else as written."""
    if not number.isascii() or not number.isdigit():
        return number
    n = len(number)
    if n == 11:
        return f"+{number[0]}-{number[1:4]}-{number[4:7]}-{number[7:]}"
    if n == 10:
        return f"{number[:3]}-{number[3:6]}-{number[6:]}"
    if n == 7:
        return f"{number[:3]}-{number[3:]}"
    if n == 5:
        return f"x{number[0]}-{number[1:]}"
    if n == 4:
        return f"x{number}"
    return number


def office_lines(gecos: Gecos) -> list[str]:
    """Office and phones, two to a line where they fit (in.fingerd's ``demi_print``)."""
    fields: list[str] = []
    if gecos.office and gecos.office_phone and \
            len(gecos.office) + len(gecos.office_phone) + len("Office") + 3 <= 5 * TAB_LEN:
        fields.append(f"Office: {gecos.office}, {phone(gecos.office_phone)}")
    else:
        if gecos.office:
            fields.append(f"Office: {gecos.office}")
        if gecos.office_phone:
            fields.append(f"Office Phone: {phone(gecos.office_phone)}")
    if gecos.home_phone:
        fields.append(f"Home Phone: {phone(gecos.home_phone)}")
    lines: list[str] = []
    alone: Optional[str] = None  # the field alone on the last line, which the next may join
    for field in fields:
        column = (max(5 * TAB_LEN, len(alone or "")) // TAB_LEN + 1) * TAB_LEN
        if alone is None or column + len(field) > LINE_LEN:
            lines.append(field)
            alone = field
            continue
        tabs = 1 + max(0, -(-(4 * TAB_LEN - len(alone)) // TAB_LEN))
        lines[-1] = alone + "\t" * tabs + field
        alone = None
    return lines


def stamp(when: float, year: bool = True) -> str:
    """``Thu Nov 26 05:42 2026 (UTC)`` as in.fingerd prints a time (asctime's first
    16 characters), the year left out when ``year`` is false."""
    try:
        tm = time.localtime(when)
        text = time.asctime(tm)[:16]
    except (OverflowError, OSError, ValueError):
        return "(time out of range)"
    return f"{text}{f' {tm.tm_year}' if year else ''} ({time.strftime('%Z', tm)})"


def idle_text(seconds: int) -> str:
    """``2 days 12 hours idle``, ``1 hour 6 minutes idle``, ``30 seconds idle``: the two
    largest units, as in.fingerd counts them; empty when not idle."""
    try:
        tm = time.gmtime(max(0, seconds))
    except (OverflowError, OSError, ValueError):
        return ""
    days, hours, minutes, secs = tm.tm_yday - 1, tm.tm_hour, tm.tm_min, tm.tm_sec
    parts = []
    for count, unit, shown in ((days, "day", True), (hours, "hour", True),
                               (minutes, "minute", not days),
                               (secs, "second", not days and not hours)):
        if count and shown:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts + ["idle"]) if days or hours or minutes or secs else ""


def shows_last_login(sessions: Sequence[Where], last: Optional[Where]) -> bool:
    """in.fingerd's rule: the last login is shown when there is no session, or when it is
    later than some session and on none of their lines."""
    if not sessions:
        return True
    return last is not None and any(s.time < last.time for s in sessions) and \
        all(s.line != last.line for s in sessions)


def session_lines(session: Where, width: int) -> list[str]:
    """``On since ...`` for one session: where from, how long idle (on a line of its own
    after a host), ``(messages off)`` when the terminal refuses write(1). Each line is
    made on its own: a line break in utmp's terminal or host (a remote host's name
    comes from its DNS) stays in its line, which the output rules clean, and never
    starts a line of its own."""
    lines = [f"On since {stamp(session.time, year=False)} on {session.line}"
             + (f" from {session.host}" if session.host else "")]
    idle = idle_text(session.idle)
    if idle:
        padded = " " * (width - len(session.line) + 3) + idle
        if session.host:
            lines.append(padded)
        else:
            lines[-1] += padded
    if not session.writable:
        if idle:
            lines.append("     (messages off)")
        else:
            lines[-1] += " (messages off)"
    return lines


def where_lines(sessions: Sequence[Where], last: Optional[Where], now: float) -> list[str]:
    """The sessions, then the last login or ``Never logged in.``."""
    if not sessions and last is None:
        return ["Never logged in."]
    shown_last = last if shows_last_login(sessions, last) else None
    width = max(len(w.line) for w in (*sessions, *([shown_last] if shown_last else [])))
    lines: list[str] = []
    for session in sessions:
        lines.extend(session_lines(session, width))
    if shown_last is not None:
        year = now - shown_last.time > HALF_YEAR
        lines.append(f"Last login {stamp(shown_last.time, year)} on {shown_last.line}" +
                     (f" from {shown_last.host}" if shown_last.host else ""))
    return lines


def mail_lines(mail: Optional[Mail]) -> list[str]:
    """``No mail.``, ``Mail last read ...``, or ``New mail received ...`` and since when
    it is unread."""
    if mail is None:
        return ["No mail."]
    if mail.received > mail.read:
        return [f"New mail received {stamp(mail.received)}",
                f"     Unread since {stamp(mail.read)}"]
    return [f"Mail last read {stamp(mail.read)}"]


def file_order(names: Sequence[str]) -> list[str]:
    """The home files in the order in.fingerd shows them (PGP key, Project, Plan),
    then any others as configured."""
    known = [name for name in FILE_TITLES if name in names]
    return known + [name for name in names if name not in FILE_TITLES]


def file_lines(files: Iterable[tuple[str, Found]], max_bytes: int) -> list[str]:
    """Each file found under its title, in in.fingerd's order; ``No Plan.`` when the
    plan is not found."""
    found = dict(files)
    lines: list[str] = []
    for name in file_order(list(found)):
        shown = found[name]
        if shown is None:
            if name == ".plan":
                lines.append("No Plan.")
            continue
        text, cut = shown
        lines.append(FILE_TITLES.get(name, f"{name}:"))
        lines.extend(split_lines(text) or [""])
        if cut:
            lines.append(f"({name} cut at {max_bytes} bytes)")
    return lines


def long_answer(person: Person, now: float) -> list[str]:
    """The lines of the long answer for ``person`` at time ``now``."""
    login = f"Login: {person.login:<15}\t\t\tName: {person.gecos.name}"
    directory = f"Directory: {person.home:<25}\tShell: {person.shell or '/bin/sh'}"
    return [login, directory, *office_lines(person.gecos),
            *where_lines(person.sessions, person.last_login, now),
            *mail_lines(person.mail), *file_lines(person.files, person.max_bytes)]
