"""System accounts and their plan files, with real accounts made for the test."""

import os
import signal
import stat
import time

import pytest

from fingerd.finger.utmp import Session
from tests.support.accounts import useradd, userdel, write_as
from tests.support.markers import needs_root
from tests.support.polling import wait_until
from tests.support.utmp import pack_session

pytestmark = needs_root

PREFIX = "fgtest"


#: The accounts' full names and uids; the last one's is above 65535, as a directory's
#: accounts' (LDAP's, or Active Directory's through SSSD) often are.
ACCOUNTS = [("Ada Lovelace,Room 1,,", 42001), ("& Plan-less", 42002), ("Linked Plan", 42003),
            ("Big Plan", 42004), ("Hidden Person", 42005), ("Closed Home", 42006),
            ("Directory Person", 70007)]


@pytest.fixture
def accounts(public_dir):
    """Accounts fgtest1..fgtest7 (ACCOUNTS), always removed."""
    made = {}
    homes = os.path.join(public_dir, "home")
    os.mkdir(homes, 0o755)
    try:
        for i, (gecos, uid) in enumerate(ACCOUNTS, 1):
            name = f"{PREFIX}{i}"
            useradd(name, uid, os.path.join(homes, name), gecos)
            made[name] = (uid, os.path.join(homes, name))
        yield made
    finally:
        for name in made:
            userdel(name)


@pytest.fixture
def system(make_daemon, accounts, public_dir):
    uid, home = accounts["fgtest1"]
    write_as(os.path.join(home, ".plan"), b"Analytical engine.\nSecond \x1b[2Jline\x07\n", uid)
    write_as(os.path.join(home, ".project"), b"Notes on the engine\n", uid)
    uid3, home3 = accounts["fgtest3"]
    os.symlink("/etc/shadow", os.path.join(home3, ".plan"))
    uid4, home4 = accounts["fgtest4"]
    write_as(os.path.join(home4, ".plan"), b"x" * 50000, uid4)
    uid5, home5 = accounts["fgtest5"]
    write_as(os.path.join(home5, ".nofinger"), b"", uid5)
    write_as(os.path.join(home5, ".plan"), b"secret plan\n", uid5)
    uid6, home6 = accounts["fgtest6"]
    os.chmod(home6, 0o700)
    utmp = os.path.join(public_dir, "utmp")
    with open(utmp, "wb") as f:
        f.write(pack_session(Session("fgtest1", "pts/9", "", int(time.time()) - 60)))
    wtmp = os.path.join(public_dir, "wtmp")
    with open(wtmp, "wb") as f:
        f.write(pack_session(Session("fgtest4", "pts/7", "", int(time.time()) - 3600)))
    mail = os.path.join(public_dir, "mail")
    os.mkdir(mail, 0o755)
    write_as(os.path.join(mail, "fgtest4"), b"From nobody\n\nHello.\n", uid4)
    os.utime(os.path.join(mail, "fgtest4"), (time.time() - 60, time.time() - 600))
    return make_daemon(users=b"alice:Happy and well\nfgtest2:From the users file\n",
                       finger__system_users="yes", finger__utmp_file=utmp,
                       finger__wtmp_file=wtmp, finger__mail_dir=mail,
                       finger__lastlog_file=os.path.join(public_dir, "no-lastlog"),
                       finger__list_users="yes").start()


def text(d, query):
    return d.finger(query).decode()


def test_account_answers_with_its_full_name(system):
    assert text(system, b"fgtest1\r\n") == "Login: fgtest1" + " " * 18 + "Name: Ada Lovelace\r\n"


def test_long_answer_has_home_shell_session_and_plan_files_filtered(system, accounts):
    answer = text(system, b"/W fgtest1\r\n")
    home = accounts["fgtest1"][1]
    assert f"Directory: {home:<25}\tShell: /bin/sh\r\nOffice: Room 1\r\n" in answer
    assert " on pts/9" in answer
    assert answer.endswith("Project:\r\nNotes on the engine\r\n"
                           "Plan:\r\nAnalytical engine.\r\nSecond [2Jline\r\n")
    assert "\x1b" not in answer and "\x07" not in answer


def test_last_login_and_mail_come_from_the_configured_files(system):
    answer = text(system, b"/W fgtest4\r\n")
    assert "\r\nLast login " in answer and " on pts/7\r\n" in answer
    assert "\r\nMail last read " in answer
    other = text(system, b"/W fgtest3\r\n")
    assert "\r\nNever logged in.\r\n" in other and "\r\nNo mail.\r\n" in other


def test_users_file_wins_over_an_account_of_the_same_name(system):
    assert text(system, b"fgtest2\r\n") == "From the users file\r\n"


def test_plan_symlinked_to_shadow_discloses_nothing(system):
    answer = text(system, b"/W fgtest3\r\n")
    assert "No Plan." in answer
    assert "root:" not in answer


@pytest.mark.parametrize("plan", ["fifo", "device", "/dev/zero", "/dev/urandom",
                                  "/proc/self/environ", "/proc/self/maps"])
def test_a_plan_that_is_no_regular_file_is_not_shown_and_never_waited_on(system, accounts,
                                                                          plan):
    """A FIFO would hold a reader until someone writes to it; a device or /proc file may
    never end or show the worker's own memory and environment."""
    uid, home = accounts["fgtest3"]
    path = os.path.join(home, ".plan")
    os.unlink(path)
    if plan == "fifo":
        os.mkfifo(path, 0o644)
    elif plan == "device":
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    else:
        os.symlink(plan, path)
    os.chown(path, uid, uid, follow_symlinks=False)
    answer = text(system, b"/W fgtest3\r\n")
    assert "No Plan." in answer
    assert "PATH=" not in answer and "python" not in answer and "\0" not in answer
    # Its slot is freed just after the close the client saw.
    wait_until(lambda: system.metric("fingerd_connections_active") == 0,
               what="the query's slot to be freed")


def test_oversized_plan_is_cut(system):
    answer = text(system, b"/W fgtest4\r\n")
    assert "x" * 16384 in answer and "x" * 16385 not in answer
    assert "(.plan cut at 16384 bytes)" in answer


def test_nofinger_hides_the_user(system):
    assert text(system, b"fgtest5\r\n") == "No such user\r\n"
    assert text(system, b"/W fgtest5\r\n") == "No such user\r\n"


def test_a_home_closed_to_the_worker_hides_the_user(system):
    assert text(system, b"fgtest6\r\n") == "No such user\r\n"


def test_plan_owned_by_someone_else_is_not_shown(system, accounts):
    uid, home = accounts["fgtest2"]
    write_as(os.path.join(home, ".plan"), b"planted by root\n", 0)
    assert text(system, b"fgtest2\r\n") == "From the users file\r\n"
    uid4, home4 = accounts["fgtest4"]
    os.chown(os.path.join(home4, ".plan"), 0, 0)
    assert "No Plan." in text(system, b"/W fgtest4\r\n")


@pytest.mark.parametrize("name", [b"../../etc/passwd", b"fgtest1/../fgtest2", b"~root",
                                  b"~fgtest1", b".", b"..", b"fgtest1/.plan", b"%2e%2e",
                                  b"fgtest1\\..", b"/etc/passwd"])
def test_a_name_that_is_a_path_is_no_user(system, name):
    assert system.finger(name + b"\r\n") == b"No such user\r\n"
    assert system.finger(b"/W " + name + b"\r\n") == b"No such user\r\n"


def test_accounts_outside_min_uid_to_max_uid_are_never_shown(system):
    for name in (b"root", b"daemon", b"nobody"):
        assert text(system, name + b"\r\n") == "No such user\r\n"


def test_an_account_above_65535_is_shown_unless_max_uid_keeps_it_out(system):
    assert text(system, b"fgtest7\r\n") == ("Login: fgtest7" + " " * 18
                                            + "Name: Directory Person\r\n")
    system.reconfigure(finger__max_uid="70006").signal(signal.SIGHUP)
    wait_until(lambda: text(system, b"fgtest7\r\n") == "No such user\r\n",
               what="fgtest7 kept out once max_uid is below its uid")
    assert text(system, b"fgtest1\r\n").startswith("Login: fgtest1")


def test_list_has_file_users_then_logged_in_accounts(system):
    assert text(system, b"\r\n") == ("alice: Happy and well\r\nfgtest2: From the users file\r\n"
                                     "fgtest1: Ada Lovelace (pts/9)\r\n")
