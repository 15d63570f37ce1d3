"""The setter service over real loopback sockets (docs/guide.md, "What it answers")."""

import os
import pwd
import socket
import subprocess
import threading

import pytest

from fingerd.serving.setter import is_loopback
from fingerd.users.usersfile import parse_users
from tests.support.accounts import NOBODY
from tests.support.acl import grant_read
from tests.support.daemon import run_first
from tests.support.disk_faults import IN_A_DAEMON
from tests.support.full_fs import fill
from tests.support.markers import needs_root
from tests.support.polling import wait_until


def on_disk(d):
    with open(d.users_file, "rb") as f:
        return parse_users(f.read())


def test_set_answers_ok_after_the_file_is_written(daemon):
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n", "an answer made before the set"
    assert daemon.setter(b"alice\r\nGone fishing\r\n") == b"OK\r\n"
    assert on_disk(daemon)["alice"] == "Gone fishing"
    assert daemon.finger(b"alice\r\n") == b"Gone fishing\r\n"


def test_set_creates_a_new_user(daemon):
    assert daemon.setter(b"carol\r\nNew here\r\n") == b"OK\r\n"
    assert daemon.finger(b"carol\r\n") == b"New here\r\n"
    assert on_disk(daemon)["carol"] == "New here"


def test_bare_lf_request(daemon):
    assert daemon.setter(b"alice\nLF only\n") == b"OK\r\n"
    assert daemon.finger(b"alice\r\n") == b"LF only\r\n"


def test_utf8_status(daemon):
    assert daemon.setter("alice\r\nGrüße ☕\r\n".encode()) == b"OK\r\n"
    assert daemon.finger(b"alice\r\n") == "Grüße ☕\r\n".encode()


def test_a_status_of_format_directives_and_expansions_is_served_as_written(daemon):
    status = b"%s%n%(asctime)s %% {0.__class__} {} ${jndi:ldap://x} $(id) `id` \\x41"
    assert daemon.setter(b"alice\r\n" + status + b"\r\n") == b"OK\r\n"
    assert daemon.finger(b"alice\r\n") == status + b"\r\n"
    with open(daemon.users_file, "rb") as f:
        assert b"alice:" + status + b"\n" in f.read()
    assert daemon.finger(b"%s%n\r\n") == b"No such user\r\n"


def test_with_policy_any_a_client_that_closes_without_reading_still_sets(make_daemon):
    daemon = make_daemon(setter__policy="any").start()
    with socket.create_connection(("127.0.0.1", daemon.setter_port)) as s:
        s.sendall(b"bob\r\nAwake\r\n")
    wait_until(lambda: daemon.finger(b"bob\r\n") == b"Awake\r\n", what="bob's status")
    assert on_disk(daemon)["bob"] == "Awake"


@pytest.mark.parametrize("request_bytes, reason", [
    (b"alice\r\n", b"ERROR missing status line\r\n"),
    (b"\r\nhappy\r\n", b"ERROR invalid user name\r\n"),
    (b"../../etc/passwd\r\nhi\r\n", b"ERROR invalid user name\r\n"),
    (b"no such\r\nhi\r\n", b"ERROR invalid user name\r\n"),
    (b"alice\r\n" + b"x" * 300 + b"\r\n", b"ERROR status longer than 256 bytes\r\n"),
    # Past the framing's 1024 bytes a line is refused alike, not closed unanswered.
    (b"alice\r\n" + b"x" * 5000 + b"\r\n", b"ERROR status longer than 256 bytes\r\n"),
    (b"alice\r\n" + b"x" * 60000 + b"\r\n", b"ERROR status longer than 256 bytes\r\n"),
    (b"a" * 5000 + b"\r\nhi\r\n", b"ERROR invalid user name\r\n"),
    (b"alice\r\n\x1b]0;owned\x07\r\n", b"ERROR status contains a control character\r\n"),
    (b"alice\r\nback\rbob:HIJACKED\r\n", b"ERROR status contains a control character\r\n"),
    (b"alice\r\n\xff\xfe\r\n", b"ERROR status is not valid UTF-8\r\n"),
    (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:1079\r\n\r\nalice\r\npwned\r\n",
     b"ERROR invalid user name\r\n"),
])
def test_refused_requests_change_nothing(daemon, request_bytes, reason):
    before = open(daemon.users_file, "rb").read()
    assert daemon.setter(request_bytes, shut_write=True) == reason
    assert open(daemon.users_file, "rb").read() == before
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert daemon.metric("fingerd_requests_total", service="setter", outcome="refused") == 1


def test_only_the_first_pipelined_request_is_carried_out(daemon):
    assert daemon.setter(b"alice\r\nA\r\nbob\r\nB\r\n") == b"OK\r\n"
    assert on_disk(daemon) == {"alice": "A", "bob": "Sleeping"}


def test_status_survives_a_reload(daemon):
    """A reload's new worker reads the users file the set was written to."""
    assert daemon.setter(b"alice\r\nSet by setter\r\n") == b"OK\r\n"
    daemon.signal(__import__("signal").SIGHUP)
    wait_until(lambda: "applied: worker" in daemon.log(), what="the reload")
    assert daemon.finger(b"alice\r\n") == b"Set by setter\r\n"


def test_status_survives_a_restart(make_daemon):
    d = make_daemon().start()
    d.setter(b"alice\r\nBefore restart\r\n")
    assert d.stop() == 0
    d.start()
    assert d.finger(b"alice\r\n") == b"Before restart\r\n"


def test_file_keeps_its_comments_owner_and_mode(make_daemon):
    d = make_daemon(users=b"# our team\nalice:x\n\nbob:y\n")
    os.chmod(d.users_file, 0o640)
    if os.geteuid() == 0:
        os.chown(d.users_file, 0, pwd.getpwnam("nobody").pw_gid)
    before = os.stat(d.users_file)
    d.start()
    assert d.setter(b"bob\r\nz\r\n") == b"OK\r\n"
    assert open(d.users_file, "rb").read() == b"# our team\nalice:x\n\nbob:z\n"
    after = os.stat(d.users_file)
    assert after.st_ino != before.st_ino, "not replaced by a rename"
    assert (after.st_mode, after.st_uid, after.st_gid) == \
        (before.st_mode, before.st_uid, before.st_gid)


@needs_root
def test_a_file_the_worker_reads_by_an_acl_is_read_after_a_set_and_a_restart(make_daemon):
    d = make_daemon(users=b"alice:x\n")
    os.chmod(d.users_file, 0o640)  # root's: the worker (nobody) reads it by the ACL alone
    grant_read(d.users_file, NOBODY)
    d.start()
    assert d.setter(b"alice\r\nAfter the set\r\n") == b"OK\r\n"
    assert d.stop() == 0
    d.start()
    assert d.finger(b"alice\r\n") == b"After the set\r\n"


def test_concurrent_setters_lose_no_update(daemon):
    errors = []

    def set_many(t):
        for i in range(10):
            reply = daemon.setter(f"u{t}x{i}\r\nstatus {t} {i}\r\n".encode())
            if reply != b"OK\r\n":
                errors.append(reply)

    threads = [threading.Thread(target=set_many, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    users = on_disk(daemon)
    for t in range(10):
        for i in range(10):
            assert users[f"u{t}x{i}"] == f"status {t} {i}"
            assert daemon.finger(f"u{t}x{i}\r\n".encode()) == f"status {t} {i}\r\n".encode()


def test_setters_racing_on_the_same_accounts_leave_file_and_answers_alike(daemon):
    """Eight threads set three accounts over and over: each account ends with one line
    in the file, holding a status some set was answered OK for, and finger answers
    what the file holds."""
    accounts = ["carol", "dave", "erin"]
    answered = {account: set() for account in accounts}

    def set_many(t):
        for i in range(30):
            account, status = accounts[(t + i) % 3], f"racing {t} {i}"
            if daemon.setter(f"{account}\r\n{status}\r\n".encode()) == b"OK\r\n":
                answered[account].add(status)

    threads = [threading.Thread(target=set_many, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    with open(daemon.users_file) as f:
        names = [line.split(":", 1)[0] for line in f]
    assert sorted(names) == sorted(["alice", "bob", *accounts])
    users = on_disk(daemon)
    for account in accounts:
        assert len(answered[account]) == 80
        assert users[account] in answered[account]
        assert daemon.finger(f"{account}\r\n".encode()) == f"{users[account]}\r\n".encode()


def test_invalid_file_on_disk_is_not_overwritten(daemon):
    with open(daemon.users_file, "ab") as f:
        f.write(b"broken line\n")
    before = open(daemon.users_file, "rb").read()
    assert daemon.setter(b"alice\r\nx\r\n") == \
        b"ERROR users file on disk has errors; fix it first\r\n"
    assert open(daemon.users_file, "rb").read() == before


@pytest.mark.parametrize("edit", ["in place", "renamed over"])
def test_an_edit_made_after_a_set_is_validated_at_the_next_set(daemon, edit):
    """The parent trusts the file it wrote itself, not one changed since."""
    assert daemon.setter(b"alice\r\nFirst\r\n") == b"OK\r\n"
    broken = open(daemon.users_file, "rb").read() + b"broken line\n"
    if edit == "in place":
        with open(daemon.users_file, "r+b") as f:
            f.write(broken)
    else:
        with open(daemon.users_file + ".new", "wb") as f:
            f.write(broken)
        os.replace(daemon.users_file + ".new", daemon.users_file)
    assert daemon.setter(b"alice\r\nSecond\r\n") == \
        b"ERROR users file on disk has errors; fix it first\r\n"
    assert open(daemon.users_file, "rb").read() == broken
    with open(daemon.users_file, "wb") as f:
        f.write(b"# fixed by hand\nalice:First\ndave:Hand-made\n")
    assert daemon.setter(b"alice\r\nThird\r\n") == b"OK\r\n"
    assert open(daemon.users_file, "rb").read() == \
        b"# fixed by hand\nalice:Third\ndave:Hand-made\n"


def test_full_disk_refuses_and_keeps_memory_and_file(make_daemon, small_fs):
    d = make_daemon()
    users = small_fs / "users"
    users.write_bytes(b"alice:Happy and well\n")
    with open(d.config_file) as f:
        text = f.read().replace(d.users_file, str(users))
    with open(d.config_file, "w") as f:
        f.write(text)
    d.start()
    filler = fill(small_fs)
    reply = d.setter(b"alice\r\n" + b"y" * 200 + b"\r\n")
    assert reply.startswith(b"ERROR cannot write users file")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert users.read_bytes() == b"alice:Happy and well\n"
    assert [p.name for p in small_fs.iterdir() if p.name.endswith(".tmp")] == []
    os.unlink(filler)
    assert d.setter(b"alice\r\nRoom again\r\n") == b"OK\r\n"
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    assert d.setter(b"alice\r\nRead-only\r\n").startswith(b"ERROR cannot write users file")
    assert d.finger(b"alice\r\n") == b"Room again\r\n"
    assert d.metric("fingerd_requests_total", service="setter", outcome="failed") == 2


def test_a_set_that_would_grow_the_file_past_what_is_read_is_refused(make_daemon, tmp_path):
    """The bound lowered to 64 bytes for this daemon."""
    d = make_daemon().start(env=run_first(str(tmp_path / "site"), (
        "import fingerd.limits\nfingerd.limits.MAX_USERS_FILE_BYTES = 64\n")))
    before = open(d.users_file, "rb").read()
    assert d.setter(b"carol\r\n" + b"x" * 40 + b"\r\n") == \
        b"ERROR users file would grow past 64 bytes, the most fingerd reads; " \
        b"remove entries first\r\n"
    assert open(d.users_file, "rb").read() == before
    assert d.setter(b"carol\r\nIn\r\n") == b"OK\r\n"


def test_a_set_written_but_not_known_durable_is_answered_nothing_and_logged(make_daemon,
                                                                             tmp_path):
    """The new file is renamed into place, then its directory's fsync fails (EIO): ERROR
    would say that nothing changed, OK that the status is safely on disk."""
    d = make_daemon().start(env=run_first(str(tmp_path / "site"), IN_A_DAEMON))
    assert d.setter(b"alice\r\nMaybe\r\n") == b""
    assert on_disk(d)["alice"] == "Maybe"
    wait_until(lambda: "users file replaced, but not known to survive a crash: Input/output "
               "error; whether the status of alice was written is unknown, and the client "
               "is told nothing" in d.log(), what="the unknown outcome logged")
    wait_until(lambda: d.finger(b"alice\r\n") == b"Maybe\r\n",
               what="the file read again at the next reload")
    assert d.log().count("and the client is told nothing") == 1, d.log()
    # The status is in the file: the parent, which had it written, logs it itself, as it
    # logs a status written, so that no flood of the worker's lines drops the record.
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert d.log().count(
        f"fingerd[{d.proc.pid}]: WARNING setter: 127.0.0.1 (uid {os.geteuid()}, {me}) may "
        f"have set the status of alice: users file replaced, but not known to survive a "
        f"crash: Input/output error\n") == 1, d.log()


@pytest.mark.parametrize("peer, allowed", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("192.0.2.7", False), ("::ffff:192.0.2.7", False), ("2001:db8::1", False),
])
def test_setter_answers_loopback_peers_only(peer, allowed):
    assert is_loopback(peer) is allowed


def test_a_refused_request_is_logged_with_the_clients_account(daemon):
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert daemon.setter(b"no such\r\nhi\r\n") == b"ERROR invalid user name\r\n"
    wait_until(lambda: f"setter: refused request from 127.0.0.1 (uid {os.geteuid()}, {me}): "
               f"invalid user name" in daemon.log(), what="the refusal logged once")
