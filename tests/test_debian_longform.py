"""``/W`` for system accounts compared line by line with Debian's in.fingerd.

Real accounts (``fgdeb1``.., uid 42301..), with their login records and mail
spools written where in.fingerd reads them (lastlog, wtmp, /var/run/utmp,
/var/mail, /dev) and put back afterwards; in.fingerd is run per query as
inetd runs it. Where the two must differ (fingerd's safety rules and its
wtmp fallback), the test says how.
"""

import os
import time

import pytest

from fingerd.finger.utmp import Session
from tests.support import in_fingerd
from tests.support.accounts import made_accounts, write_as
from tests.support.markers import needs_root, needs_tool
from tests.support.system_logins import UTMP_FILE, SystemLogins

pytestmark = [needs_root, needs_tool("in.fingerd", "fingerd")]

GECOS = {
    "fgdeb1": "Ada Lovelace,Room 1,555-1234,555-9876,other",
    "fgdeb2": "",
    "fgdeb3": "& Person,Room 101 Long Building Name,+1 555 123 4567,5559876543",
    "fgdeb4": "Grace,,5551234,,",
    "fgdeb5": "Differs,,,",
    "fgdeb6": "Hidden,,,",
}
FIRST_UID = 42301


@pytest.fixture
def accounts(public_dir):
    """name: (uid, home) for every account in GECOS, always removed."""
    with made_accounts(os.path.join(public_dir, "home"), GECOS, FIRST_UID) as made:
        yield made


@pytest.fixture
def system():
    records = SystemLogins()
    yield records
    records.restore()


@pytest.fixture
def both(make_daemon, accounts, system):
    """``ask(name)``: ``(fingerd's lines, in.fingerd's lines)`` for ``/W name``."""
    daemon = make_daemon(finger__system_users="yes", finger__utmp_file=UTMP_FILE).start()

    def ask(name):
        query = f"/W {name}\r\n".encode()
        return (daemon.finger(query).decode().split("\r\n"),
                in_fingerd.ask(query).decode().split("\r\n"))
    return ask


def home_file(accounts, name, file_name, data):
    uid, home = accounts[name]
    write_as(os.path.join(home, file_name), data, uid)


def test_gecos_fields_last_login_new_mail_and_every_home_file(both, accounts, system):
    now = int(time.time())
    uid, _ = accounts["fgdeb1"]
    system.lastlog(uid, "pts/3", "192.0.2.7", now - 3600)
    system.mail("fgdeb1", uid, received=now - 600, read=now - 7200)
    home_file(accounts, "fgdeb1", ".plan", "Analytical engine.\nSecond line, café\n".encode())
    home_file(accounts, "fgdeb1", ".project", b"no newline")
    home_file(accounts, "fgdeb1", ".pgpkey", b"KEY\n")
    mine, theirs = both("fgdeb1")
    assert mine == theirs
    assert mine[2:5] == ["Office: Room 1, 555-1234\t\tHome Phone: 555-9876",
                         mine[3], mine[4]]
    assert mine[3].startswith("Last login ") and mine[3].endswith(" on pts/3 from 192.0.2.7")
    assert mine[4].startswith("New mail received ")
    assert mine[-8:] == ["PGP key:", "KEY", "Project:", "no newline", "Plan:",
                         "Analytical engine.", "Second line, café", ""]


def test_no_gecos_never_logged_in_no_mail_no_plan(both):
    mine, theirs = both("fgdeb2")
    assert mine == theirs
    assert mine[0].endswith("Name: ")
    assert mine[2:] == ["Never logged in.", "No mail.", "No Plan.", ""]


def test_old_last_login_has_its_year_mail_read_and_an_empty_plan(both, accounts, system):
    now = int(time.time())
    uid, _ = accounts["fgdeb3"]
    system.lastlog(uid, "tty2", "", now - 86400 * 200)
    system.mail("fgdeb3", uid, received=now - 86400 * 3, read=now - 60)
    home_file(accounts, "fgdeb3", ".plan", b"")
    mine, theirs = both("fgdeb3")
    assert mine == theirs
    assert mine[0].endswith("Name: Fgdeb3 Person")
    assert mine[2:4] == ["Office: Room 101 Long Building Name\tOffice Phone: +1 555 123 4567",
                         "Home Phone: 555-987-6543"]
    year = time.localtime(now - 86400 * 200).tm_year
    assert mine[4].startswith("Last login ") and f" {year} (" in mine[4]
    assert mine[4].endswith(" on tty2")
    assert mine[5].startswith("Mail last read ")
    assert mine[6:] == ["Plan:", "", ""]


def test_sessions_with_idle_times_and_a_later_login_elsewhere(both, accounts, system):
    """Idle times chosen 30 s or more from the next change of what is shown. Every
    session has its terminal: for one without, finger leaves the session's idle time
    unset and prints what the heap held (in a fresh Debian 12 chroot it crashed);
    test_logins.py holds fingerd to its own answer there."""
    now = int(time.time())
    uid, _ = accounts["fgdeb4"]
    system.terminal("fgdebA", now - 3990, 0o620)
    system.terminal("fgdebBB", now - 90000, 0o600)
    system.terminal("fgdebC", now - 9030, 0o600)
    system.utmp([Session("fgdeb4", "fgdebA", "", now - 7200),
                 Session("fgdeb4", "fgdebBB", "host.example.org", now - 86400 * 2),
                 Session("fgdeb4", "fgdebC", "", now - 10000)])
    system.lastlog(uid, "tty2", "", now - 300)
    mine, theirs = both("fgdeb4")
    assert mine == theirs
    assert mine[2] == "Office Phone: 555-1234"
    assert mine[3].endswith(" on fgdebA    1 hour 6 minutes idle")
    assert mine[4].endswith(" on fgdebBB from host.example.org")
    assert mine[5:7] == ["   1 day 1 hour idle", "     (messages off)"]
    assert mine[7].endswith(" on fgdebC    2 hours 30 minutes idle")
    assert mine[8] == "     (messages off)"
    assert mine[9].startswith("Last login ") and mine[9].endswith(" on tty2")


def test_where_fingerd_must_differ(both, accounts, system, public_dir):
    """A login only wtmp knows of, control characters in a plan, a spool that is a link:
    in.fingerd says "Never logged in.", shows ^[ and follows the link; fingerd shows
    the login, removes the control characters and does not follow the link. Neither
    shows a project linked to someone else's file."""
    now = int(time.time())
    uid, home = accounts["fgdeb5"]
    system.wtmp(Session("fgdeb5", "pts/5", "198.51.100.1", now - 500))
    home_file(accounts, "fgdeb5", ".plan", b"Bell\x07 and \x1b[2Jclear\n")
    elsewhere = os.path.join(public_dir, "not-fgdeb5s")
    write_as(elsewhere, b"root's words\n", 0)
    os.symlink(elsewhere, os.path.join(home, ".project"))
    spool = os.path.join("/var/mail", "fgdeb5")
    os.symlink(elsewhere, spool)
    try:
        mine, theirs = both("fgdeb5")
    finally:
        os.unlink(spool)
    assert mine[:2] == theirs[:2]
    assert theirs[2] == "Never logged in."
    assert mine[2].startswith("Last login ") and \
        mine[2].endswith(" on pts/5 from 198.51.100.1")
    assert theirs[3].startswith("Mail last read ") and mine[3] == "No mail."
    assert theirs[4:] == ["Plan:", "Bell^G and ^[[2Jclear", ""]
    assert mine[4:] == ["Plan:", "Bell and [2Jclear", ""]


def test_nofinger_hides_the_account_from_both(both, accounts):
    home_file(accounts, "fgdeb6", ".nofinger", b"")
    mine, theirs = both("fgdeb6")
    assert mine == ["No such user", ""]
    assert theirs == [""]
