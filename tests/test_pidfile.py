"""The pidfile and its lock (docs/guide.md, "Running"): no other user can keep a start from
happening, and no link at either path is followed."""

import contextlib
import fcntl
import io
import os
import stat
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.process.pidfile import (
    DEAD,
    NOT_RUNNING,
    RUNNING,
    AlreadyRunning,
    Pidfile,
    held_in_lock_table,
    lock_path,
    pid_in,
    probe,
    read_pid,
    remove_stale,
)
from tests.support import ROOT
from tests.support.accounts import become_nobody
from tests.support.children import as_nobody, holding_child
from tests.support.daemon import run_fingerd
from tests.support.markers import needs_root


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "fingerd.pid")


def test_the_lock_is_a_private_file_beside_a_public_pidfile(path):
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(4321)
    try:
        lock = os.stat(lock_path(path))
        assert stat.S_ISREG(lock.st_mode) and lock.st_mode & 0o777 == 0o600
        assert lock.st_uid == os.geteuid()
        assert os.stat(path).st_mode & 0o777 == 0o644
        assert open(path).read() == "4321\n"
        assert probe(path) == (RUNNING, 4321)
        with pytest.raises(AlreadyRunning, match=r"already running \(pid 4321"):
            Pidfile(path).acquire()
    finally:
        pidfile.release()
    assert probe(path) == (DEAD, 4321), "the pidfile names another process: it stays"


def test_a_stale_pidfile_is_removed_only_while_no_daemon_holds_the_lock(path):
    with open(path, "w") as f:
        f.write("4321\n")
    holder = Pidfile(path)
    holder.acquire()
    try:
        assert not remove_stale(path), "a daemon holds the lock: its pidfile stays"
        assert open(path).read() == "4321\n"
    finally:
        holder.release()
    assert remove_stale(path)
    assert not os.path.lexists(path) and not os.path.lexists(lock_path(path))
    assert not remove_stale(path), "nothing left to remove"
    assert not os.path.lexists(lock_path(path)), "no lock file made for nothing"


@needs_root
def test_a_stale_pidfile_of_another_account_is_left(path):
    with open(path, "w") as f:
        f.write("4321\n")
    os.chown(path, 65534, 65534)
    assert not remove_stale(path)
    assert os.path.exists(path) and not os.path.lexists(lock_path(path))


def test_release_leaves_nothing_behind(path):
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(os.getpid())
    pidfile.release()
    assert not os.path.lexists(path) and not os.path.lexists(lock_path(path))
    assert probe(path) == (NOT_RUNNING, None)


def test_the_lock_file_names_its_holder_once_the_pidfile_is_removed(path):
    """The daemon names itself in its lock file too, written over the pid of the process
    that started it (a longer one): removing the pidfile does not lose it."""
    pidfile = Pidfile(path)
    pidfile.acquire()
    try:
        pidfile.write(1234567)
        pidfile.write(4321)
        os.unlink(path)
        assert probe(path) == (RUNNING, 4321)
        os.truncate(lock_path(path), 0)  # as a daemon that wrote no pid there left it
        assert probe(path) == (RUNNING, None)
    finally:
        pidfile.release()
    assert probe(path) == (NOT_RUNNING, None)


def test_a_pidfile_without_its_lock_is_dead_and_taken_over(path):
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    with open(path, "w") as f:
        f.write(f"{gone}\n")
    assert probe(path) == (DEAD, gone)
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(os.getpid())
    assert probe(path) == (RUNNING, os.getpid())
    pidfile.release()


def test_a_symlink_at_the_pidfile_path_is_replaced_never_followed(path, tmp_path):
    target = tmp_path / "precious"
    target.write_text("not a pid\n")
    os.symlink(target, path)
    assert probe(path) == (DEAD, None)
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(os.getpid())
    assert not os.path.islink(path) and open(path).read() == f"{os.getpid()}\n"
    assert target.read_text() == "not a pid\n"
    pidfile.release()
    assert target.read_text() == "not a pid\n" and not os.path.lexists(path)


def test_a_symlink_at_the_lock_path_is_removed_never_followed(path, tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    os.chmod(target, 0o600)
    os.symlink(target, lock_path(path))
    os.symlink(tmp_path / "dangling", path)
    assert probe(path) == (DEAD, None), "a symlink is no lock"
    pidfile = Pidfile(path)
    pidfile.acquire()
    try:
        assert not os.path.islink(lock_path(path))
        assert target.read_text() == "keep me\n"
        with open(target) as f:  # the daemon's lock is not on the target
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not (tmp_path / "dangling").exists()
    finally:
        pidfile.release()


def test_a_lock_file_others_could_open_is_replaced(path):
    with open(lock_path(path), "w"):
        pass
    os.chmod(lock_path(path), 0o644)
    before = os.stat(lock_path(path)).st_ino
    with open(lock_path(path)) as other:
        fcntl.flock(other, fcntl.LOCK_SH)
        pidfile = Pidfile(path)
        pidfile.acquire()
        try:
            after = os.stat(lock_path(path))
            assert after.st_ino != before and after.st_mode & 0o777 == 0o600
        finally:
            pidfile.release()


@contextlib.contextmanager
def shared_lock_as_nobody(*paths):
    """A child process that has dropped to nobody and holds a shared flock on each of
    ``paths`` it can open; yields what it managed (``{path: "locked" or "EACCES"}``),
    and ends it by its pid."""
    def lock_each():
        become_nobody()
        return [shared_lock(path) for path in paths]

    with holding_child(lock_each) as report:
        yield dict(zip(paths, report))


def shared_lock(path):
    """``"locked"`` once this process holds a shared flock on ``path`` (left open), or
    why not."""
    try:
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return os.strerror(exc.errno)
    return "locked"


@needs_root
def test_a_shared_lock_held_by_another_user_does_not_block_a_start(make_daemon):
    """The review's finding: nobody, reading a leftover pidfile, held LOCK_SH on it and
    no daemon could start. Now the lock is elsewhere, and nobody cannot open it."""
    d = make_daemon()
    d.start()
    pid = d.proc.pid
    assert d.stop() == 0
    with open(d.pidfile, "w") as f:  # a leftover pidfile, readable by all
        f.write(f"{pid}\n")
    os.chmod(d.pidfile, 0o644)
    # A leftover lock file of the old kind, that others could open, too.
    with open(lock_path(d.pidfile), "w"):
        pass
    os.chmod(lock_path(d.pidfile), 0o644)
    with shared_lock_as_nobody(d.pidfile, lock_path(d.pidfile)) as held:
        assert held == {d.pidfile: "locked", lock_path(d.pidfile): "locked"}
        d.start()
        state, running = probe(d.pidfile)
        assert (state, running) == (RUNNING, d.proc.pid)
        with shared_lock_as_nobody(d.pidfile, lock_path(d.pidfile)) as again:
            assert again[lock_path(d.pidfile)] == "Permission denied"
        assert d.stop() == 0


def test_a_second_start_is_still_refused(make_daemon):
    d = make_daemon().start()
    again = run_fingerd("-c", d.config_file, "-n")
    assert again.returncode == 1
    assert f"already running (pid {d.proc.pid}" in again.stderr


def test_a_second_start_names_the_daemon_from_its_lock_file_once_the_pidfile_is_removed(
        make_daemon):
    """The operator is told which process holds the lock, not ``pid None``: the daemon
    wrote its pid in the lock file too (fingerd(8), FILES)."""
    d = make_daemon().start()
    os.unlink(d.pidfile)
    again = run_fingerd("-c", d.config_file, "-n")
    assert (again.returncode, again.stderr) == (
        1, f"fingerd: already running (pid {d.proc.pid}, pidfile {d.pidfile})\n")


def value_as_nobody(body):
    """``body()``'s value, run in a child that has dropped to nobody."""
    result = as_nobody(body)
    assert result.error is None, result.error
    return result.value


def ctl_as_nobody(config, command):
    """``[exit status, stdout, stderr]`` of ``fingerd-ctl -c config command`` as nobody."""
    from fingerd import ctl

    def run():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = ctl.main(["-c", config, command])
        return [code, out.getvalue(), err.getvalue()]
    return value_as_nobody(run)


@needs_root
def test_any_account_tells_running_dead_and_not_running_without_opening_the_lock(
        public_dir):
    path = os.path.join(public_dir, "fingerd.pid")
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(4321)

    def probed():
        try:
            os.open(lock_path(path), os.O_RDONLY)
            opened = "opened"
        except OSError as exc:
            opened = os.strerror(exc.errno)
        return [opened, *probe(path)]
    try:
        assert value_as_nobody(probed) == ["Permission denied", RUNNING, 4321]
    finally:
        os.close(pidfile.fd)  # the holder dies: its lock goes, its files stay
    assert os.path.exists(lock_path(path))
    assert value_as_nobody(probed) == ["Permission denied", DEAD, 4321]
    os.unlink(path)
    os.unlink(lock_path(path))
    assert value_as_nobody(probed) == ["No such file or directory", NOT_RUNNING, None]


def test_only_the_exclusive_lock_on_that_very_file_counts_in_the_lock_table(tmp_path):
    lock = tmp_path / "fingerd.pid.lock"
    lock.write_bytes(b"")
    st = os.stat(lock)
    name = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    table = tmp_path / "locks"

    def held(*lines):
        table.write_text("".join(line + "\n" for line in lines))
        return held_in_lock_table(str(lock), str(table))
    assert held(f"1: FLOCK  ADVISORY  WRITE 1234 {name} 0 EOF")
    assert not held(f"1: FLOCK  ADVISORY  READ 1234 {name} 0 EOF"), "a probe's shared lock"
    assert not held(f"1: -> FLOCK  ADVISORY  WRITE 1234 {name} 0 EOF"), "a waiter"
    assert not held(f"1: POSIX  ADVISORY  WRITE 1234 {name} 0 EOF")
    assert not held(f"1: FLOCK  ADVISORY  WRITE 1234 {name}0 0 EOF"), "another inode"
    assert not held()
    os.unlink(lock)
    assert not held(f"1: FLOCK  ADVISORY  WRITE 1234 {name} 0 EOF"), "no file, no lock"


@needs_root
def test_any_account_may_ask_the_status_of_a_root_daemon_but_not_signal_it(
        make_daemon):
    """The lock file stays root's: status reads the kernel's lock table instead; the
    commands that signal the daemon stay root's."""
    d = make_daemon().start()
    assert ctl_as_nobody(d.config_file, "status") == [
        0, f"fingerd is running (pid {d.proc.pid})\n", ""]
    for command in ("stop", "reload"):
        code, _out, err = ctl_as_nobody(d.config_file, command)
        assert (code, err) == (4, "fingerd-ctl: Operation not permitted: run as root\n")
    assert ctl_as_nobody(d.config_file, "reopen") == [
        1, "", f"fingerd-ctl: cannot signal fingerd (pid {d.proc.pid}): Operation not "
               "permitted: run as root\n"]
    assert probe(d.pidfile) == (RUNNING, d.proc.pid)
    assert os.stat(lock_path(d.pidfile)).st_mode & 0o777 == 0o600
    assert d.stop() == 0
    assert ctl_as_nobody(d.config_file, "status") == [3, "fingerd is not running\n", ""]


@needs_root
def test_a_lock_and_pidfile_another_account_made_name_no_daemon_to_root(public_dir):
    """In a directory others may write (a pidfile under /tmp), another account can make
    the lock file, hold its lock and name any pid in the pidfile: root's fingerd-ctl
    stop then signalled that process. A file of another account's than root's or the
    caller's vouches for nothing."""
    directory = os.path.join(public_dir, "shared")
    os.mkdir(directory)
    os.chmod(directory, 0o1777)
    path = os.path.join(directory, "fingerd.pid")

    def forge():
        become_nobody()
        with open(path, "w") as f:
            f.write(f"{os.getppid()}\n")  # a root process: the test's own
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _forged.append(fd)
        return True

    with holding_child(forge):
        assert held_in_lock_table(lock_path(path))
        assert probe(path) == (DEAD, None)
        assert as_nobody(lambda: probe(path)).value == [RUNNING, os.getpid()], \
            "the account that made them still sees its own"


#: The forged lock's descriptor, kept open by the holding child.
_forged = []


@pytest.mark.parametrize("content, pid", [
    (b"4242\n", 4242), (b" 17 \n", 17), (b"4194304\n", 4194304),
    # A process group (0, -1: every process root may signal), a sign, a separator, a
    # number no process has, a non-ASCII digit: no pid.
    (b"0\n", None), (b"-1\n", None), (b"+1\n", None), (b"1_0\n", None),
    (b"4194305\n", None), (b"99999999999999999999\n", None), ("\u0661".encode(), None),
    (b"", None), (b"\xff\n", None),
])
def test_a_pidfile_names_a_pid_a_process_can_have_or_none(path, content, pid):
    with open(path, "wb") as f:
        f.write(content)
    assert read_pid(path) == pid


@given(st.binary(max_size=40))
def test_any_line_is_a_pid_in_range_or_none(line):
    pid = pid_in(line)
    assert pid is None or (1 <= pid <= 4194304 and str(pid).encode() == line.strip())


def test_a_daemon_gone_before_it_is_signalled_is_said_so_without_a_traceback(path):
    """The lock held, the pidfile naming a process that has exited (a daemon that ends
    between fingerd-ctl's look and its signal): reload and reopen say it is not running."""
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    pidfile = Pidfile(path)
    pidfile.acquire()
    pidfile.write(gone)
    try:
        for command, said in (("reload", f"fingerd (pid {gone}) exited before it was asked"),
                              ("reopen", "fingerd is not running")):
            result = subprocess.run(
                [sys.executable, "-m", "fingerd.ctl", "-c", path + ".no-such.conf",
                 "--pidfile", path, command], cwd=ROOT, timeout=60,
                stdin=subprocess.DEVNULL, capture_output=True, text=True)
            assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
            assert said in result.stdout + result.stderr
    finally:
        pidfile.release()
