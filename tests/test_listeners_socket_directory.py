"""The setter's Unix socket is made only in a directory no one but root can change, and
is born with its final mode, so that no account can turn root's bind into a change of a
file of its choosing: a race against a symbolic link swapped in by another account, and
every directory refused, with the reason, through real starts."""

import os
import select
import socket
import stat
import subprocess
import sys
import time

import pytest

from fingerd.process.parent.listeners import BindError, bind_unix
from tests.support import ROOT
from tests.support.accounts import GROUP, made_accounts
from tests.support.markers import needs_root, needs_tool

pytestmark = needs_root

OPTION = "[setter] socket"
#: The exit status of a start refused on a socket path, which no retry mends until the
#: operator acts (EX_CONFIG: fingerd.service does not restart it).
MISCONFIGURED = 78
SOCKET = "setter.sock"

#: The account that attacks, made for this module.
RACER, RACER_UID = "fgsock1", 42501


@pytest.fixture(scope="module")
def racer(tmp_path_factory):
    homes = str(tmp_path_factory.mktemp("socket-directory") / "home")
    with made_accounts(homes, {RACER: "Socket racer"}, RACER_UID):
        yield RACER_UID


@pytest.fixture
def victim(public_dir):
    """A file of root's, mode 0600, and a check that it is as it was."""
    path = os.path.join(public_dir, "victim")
    with open(path, "wb") as f:
        f.write(b"secret\n")
    os.chmod(path, 0o600)
    before = os.stat(path)

    def untouched():
        st = os.stat(path)
        with open(path, "rb") as f:
            return (f.read() == b"secret\n" and st.st_mode == before.st_mode
                    and (st.st_uid, st.st_gid) == (before.st_uid, before.st_gid))
    return path, untouched


def directory(public_dir, mode, uid=0, name="socket-dir"):
    path = os.path.join(public_dir, name)
    os.mkdir(path)
    os.chown(path, uid, GROUP if uid else 0)
    os.chmod(path, mode)
    return path


def swap_in_symlinks(where, target, seconds):
    """As the account of the calling process: whenever a socket is at ``where``, put a
    symbolic link to ``target`` in its place, as fast as it can, for ``seconds``."""
    swap = where + ".swap"
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        try:
            if stat.S_ISSOCK(os.lstat(where).st_mode):
                if not os.path.lexists(swap):
                    os.symlink(target, swap)
                os.rename(swap, where)
        except OSError:
            continue


@pytest.fixture
def run_as_racer(racer):
    """Start ``swap_in_symlinks`` in a child process of the racer's account; the child is
    ended by its pid."""
    children = []

    def start(where, target, seconds):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready_r)
                os.setgroups([])
                os.setresgid(GROUP, GROUP, GROUP)
                os.setresuid(racer, racer, racer)
                os.write(ready_w, b"!")
                swap_in_symlinks(where, target, seconds)
            finally:
                os._exit(0)
        children.append(pid)
        os.close(ready_w)
        assert select.select([ready_r], [], [], 10)[0], "the racer did not start"
        assert os.read(ready_r, 1) == b"!"
        os.close(ready_r)

    yield start
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def attempts_under_race(path, untouched, seconds=3, most=3000):
    """Bind at ``path`` as each start does, again and again while the racer swaps; how
    many attempts were made, and the reasons they were refused."""
    reasons = set()
    attempts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and attempts < most and untouched():
        attempts += 1
        try:
            bind_unix(path, 5, OPTION).close()
        except BindError as exc:
            reasons.add(str(exc))
        if os.path.islink(path):
            os.unlink(path)
    return attempts, reasons


def test_a_symlink_swapped_in_by_another_account_never_changes_a_file(
        make_daemon, public_dir, victim, run_as_racer):
    victim_path, untouched = victim
    hostile = directory(public_dir, 0o777, uid=RACER_UID)
    path = os.path.join(hostile, SOCKET)
    run_as_racer(path, victim_path, seconds=15)
    attempts, reasons = attempts_under_race(path, untouched)
    assert untouched(), f"the victim changed within {attempts} binds"
    assert attempts >= 100
    reason = f"directory {hostile} is owned by {RACER}, not by root; run chown root {hostile}"
    assert reasons == {f"cannot listen on {path} ({OPTION}): {reason}"}
    for _ in range(3):
        refused_start(make_daemon, path, reason)
    assert untouched() and os.listdir(hostile) == []


@pytest.mark.parametrize("mode, owner, reason", [
    (0o755, RACER_UID, "is owned by fgsock1, not by root; run chown root {}"),
    (0o775, 0, "is writable by group; run chmod g-w {}"),
    (0o757, 0, "is writable by others; run chmod o-w {}"),
    (0o777, 0, "is writable by group and others; run chmod go-w {}"),
    (0o1777, 0, "is writable by group and others; run chmod go-w {}"),
], ids=["another-accounts", "group-writable", "world-writable", "0777", "sticky-like-tmp"])
def test_a_start_in_a_directory_others_can_change_is_refused_in_one_line(
        make_daemon, public_dir, racer, mode, owner, reason):
    where = directory(public_dir, mode, uid=owner)
    path = os.path.join(where, SOCKET)
    refused_start(make_daemon, path, f"directory {where} {reason.format(where)}")
    assert os.listdir(where) == []


def refused_start(make_daemon, path, reason):
    d = make_daemon(setter__socket=path).start(wait=False)
    assert d.proc.wait(30) == MISCONFIGURED
    assert d.log().splitlines() == [f"fingerd: cannot listen on {path} ({OPTION}): {reason}"]
    assert not os.path.exists(d.pidfile)


def test_a_symlinked_directory_is_refused_and_not_followed(make_daemon, public_dir):
    real = directory(public_dir, 0o755)
    link = os.path.join(public_dir, "link-dir")
    os.symlink(real, link)
    refused_start(make_daemon, os.path.join(link, SOCKET),
                  f"directory {link} is a symbolic link, which fingerd does not follow; "
                  f"name the real directory in {OPTION}")
    assert os.listdir(real) == []


def test_a_symlink_at_the_socket_path_is_left_alone_and_refused(public_dir, victim):
    victim_path, untouched = victim
    where = directory(public_dir, 0o755)
    path = os.path.join(where, SOCKET)
    os.symlink(victim_path, path)
    with pytest.raises(BindError, match="a file that is not a socket is in the way$"):
        bind_unix(path, 5, OPTION)
    assert os.readlink(path) == victim_path and untouched()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_missing_directory_is_made_0755_and_the_socket_born_0666(public_dir, umask):
    """Whatever the umask: systemd's unit for fingerd sets 0077, under which a directory
    made 0700 would shut out the users the socket is for."""
    path = os.path.join(public_dir, "run", "fingerd", SOCKET)
    old = os.umask(umask)
    try:
        sock = bind_unix(path, 5, OPTION)
        assert os.umask(umask) == umask, "the umask is put back"
    finally:
        os.umask(old)
    with sock:
        for made in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
            st = os.stat(made)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755), made
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@needs_tool("strace", "strace")
def test_the_socket_is_born_0666_and_no_operation_by_path_follows_the_bind(public_dir):
    path = os.path.join(directory(public_dir, 0o755), SOCKET)
    trace = os.path.join(public_dir, "trace")
    script = (f"from fingerd.process.parent.listeners import bind_unix; "
              f"bind_unix({path!r}, 5, {OPTION!r})")
    subprocess.run(["strace", "-qq", "-e", "trace=%file,bind,umask", "-o", trace,
                    sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    with open(trace) as f:
        calls = f.read().splitlines()
    binds = [i for i, call in enumerate(calls) if call.startswith("bind(") and path in call]
    assert len(binds) == 1, calls[-20:]
    assert calls[binds[0] - 1].startswith("umask(0111)"), calls[binds[0] - 3:binds[0] + 3]
    assert calls[binds[0] + 1].startswith("umask("), calls[binds[0]:binds[0] + 3]
    assert [call for call in calls[binds[0]:] if path in call] == [calls[binds[0]]]


def test_a_daemon_in_a_safe_directory_serves_and_removes_its_socket(make_daemon, public_dir):
    where = directory(public_dir, 0o755)
    path = os.path.join(where, SOCKET)
    d = make_daemon(setter__socket=path).start()
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o666
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b"alice\r\nBy the socket\r\n")
        assert client.makefile("rb").read() == b"OK\r\n"
    assert d.finger(b"alice\r\n") == b"By the socket\r\n"
    assert d.stop() == 0
    assert not os.path.lexists(path), "the socket is removed at stop"
