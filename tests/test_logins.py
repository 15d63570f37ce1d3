"""Reading last logins, terminals and mail spools from real files, bounded."""

import os
import time

from fingerd.finger import logins
from fingerd.finger.longform import Mail, Where
from fingerd.finger.utmp import RECORD, Session
from tests.support.children import in_child
from tests.support.utmp import pack_lastlog, pack_session


def write_lastlog(path, uid, record):
    with open(path, "ab") as f:
        f.truncate(uid * 292)
        f.write(record)


def test_utmp_sessions_of_a_regular_file(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(pack_session(Session("ada", "pts/1", "192.0.2.7", 1700000000)) +
                     b"\0" * 100)
    assert logins.sessions(str(path)) == [Session("ada", "pts/1", "192.0.2.7", 1700000000)]
    assert logins.sessions(str(tmp_path / "missing")) == []


def test_utmp_that_is_not_a_regular_file_gives_no_sessions_without_blocking(tmp_path):
    """A FIFO with no writer, a directory and a device: no sessions, read in a child
    that is killed if it blocks, so that a reader that waits fails the test."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    paths = [str(fifo), str(tmp_path), "/dev/zero"]
    result = in_child(lambda: [logins.sessions(path) for path in paths], timeout=5)
    assert result.value == [[], [], []], result


def test_lastlog_record_of_the_uid(tmp_path):
    path = tmp_path / "lastlog"
    write_lastlog(path, 42001, pack_lastlog("pts/3", "192.0.2.7", 1700000000))
    assert logins.from_lastlog(str(path), 42001) == Where("pts/3", "192.0.2.7", 1700000000)
    assert logins.from_lastlog(str(path), 42000) is None
    assert logins.from_lastlog(str(path), 99999) is None
    assert logins.from_lastlog(str(tmp_path / "missing"), 42001) is None


def test_lastlog_first_then_wtmp(tmp_path):
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(pack_session(Session("ada", "pts/4", "h", 1700000100)))
    lastlog = tmp_path / "lastlog"
    write_lastlog(lastlog, 5, pack_lastlog("tty1", "", 1700000000))
    assert logins.last_login(5, "ada", str(lastlog), str(wtmp)) == Where("tty1", "", 1700000000)
    assert logins.last_login(6, "ada", str(lastlog), str(wtmp)) == \
        Where("pts/4", "h", 1700000100)
    assert logins.last_login(6, "bob", str(lastlog), str(wtmp)) is None


def rchar():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_a_huge_wtmp_is_read_from_its_end_within_the_bound(tmp_path):
    """A 4 GiB wtmp (sparse): the login at its end is found and one at its start is not,
    each lookup reading at most WTMP_TAIL_BYTES."""
    path = tmp_path / "wtmp"
    with open(path, "wb") as f:
        f.write(pack_session(Session("early", "tty1", "", 1)))
        f.truncate(4 * 1024 ** 3 // RECORD.size * RECORD.size)
        f.seek(0, os.SEEK_END)
        f.write(pack_session(Session("late", "pts/7", "", 1700000000)))
        f.write(b"\0" * 100)  # a record being written
    for login, expected in (("late", Where("pts/7", "", 1700000000)), ("early", None)):
        before, started = rchar(), time.monotonic()
        assert logins.from_wtmp(str(path), login) == expected
        assert rchar() - before <= logins.WTMP_TAIL_BYTES
        assert time.monotonic() - started < 2


def test_wtmp_that_is_not_a_regular_file_is_not_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert logins.from_wtmp(str(fifo), "ada") is None
    assert logins.from_wtmp(str(tmp_path), "ada") is None


def test_mail_spool_times(tmp_path):
    spool = tmp_path / "ada"
    assert logins.mail_state("ada", str(tmp_path)) is None
    spool.write_bytes(b"")
    assert logins.mail_state("ada", str(tmp_path)) is None
    spool.write_bytes(b"From x\n")
    os.utime(spool, (1700000000, 1700000600))
    assert logins.mail_state("ada", str(tmp_path)) == Mail(received=1700000600, read=1700000000)


def test_mail_spool_through_a_link_or_not_a_file_is_no_mail(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"From x\n")
    (tmp_path / "ada").symlink_to(target)
    (tmp_path / "bob").mkdir()
    assert logins.mail_state("ada", str(tmp_path)) is None
    assert logins.mail_state("bob", str(tmp_path)) is None


def test_terminal_that_cannot_be_told_is_not_idle_and_refuses_messages():
    assert logins.terminal("no-such-tty-here", time.time()) == (0, False)
    assert logins.terminal("../etc/passwd", time.time()) == (0, False)
    assert logins.terminal("", time.time()) == (0, False)


def test_terminal_idle_time_and_write_permission():
    now = time.time()
    idle, writable = logins.terminal("null", now)
    assert writable  # /dev/null is 0666
    assert idle == int(now - os.stat("/dev/null").st_atime)
