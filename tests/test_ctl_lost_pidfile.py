"""fingerd-ctl with a pidfile that misleads (fingerd-ctl(8)): removed while the daemon
runs, naming no pid, or moved in the configuration. A running daemon is never said
stopped or not running, and is never left running by a stop that says it stopped.
"""

import os
import signal

import pytest

from fingerd import ctl
from fingerd.config import DEFAULT_PIDFILE
from fingerd.process.pidfile import RUNNING, probe
from tests.support.children import main_as_nobody
from tests.support.daemon import run_fingerd
from tests.support.polling import wait_until


def test_a_daemon_whose_pidfile_was_removed_is_found_by_its_lock_file(detached):
    """Its pidfile removed while it runs, the daemon still holds its lock, and the lock
    file names it: status, reload and stop reach it."""
    d = detached
    assert run_fingerd("-c", d.config_file).returncode == 0
    pid = probe(d.pidfile)[1]
    os.unlink(d.pidfile)
    status = d.ctl("status")
    assert (status.returncode, status.stdout) == (0, f"fingerd is running (pid {pid})\n")
    reloaded = d.ctl("reload")
    assert reloaded.returncode == 0 and f"fingerd (pid {pid}): " in reloaded.stdout, \
        reloaded.stderr
    stopped = d.ctl("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"fingerd (pid {pid}) stopped\n")
    assert not os.path.exists(f"/proc/{pid}")


def test_a_running_daemon_whose_pid_is_nowhere_is_never_said_stopped(detached):
    """Neither the pidfile nor the lock file names the daemon holding the lock (as one of a
    version that wrote no pid there): said so, and stop, reload and reopen fail."""
    d = detached
    assert run_fingerd("-c", d.config_file).returncode == 0
    pid = probe(d.pidfile)[1]
    try:
        os.unlink(d.pidfile)
        os.truncate(d.pidfile + ".lock", 0)
        unknown = (f"fingerd is running (pid unknown: neither its pidfile {d.pidfile} nor "
                   f"its lock file {d.pidfile}.lock names it)")
        status = d.ctl("status")
        assert (status.returncode, status.stdout) == (0, unknown + "\n")
        for command in ("stop", "reload", "reopen"):
            failed = d.ctl(command)
            assert (failed.returncode, failed.stderr) == (1, f"fingerd-ctl: {unknown}\n"), \
                command
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n", "stop left it running"
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the daemon's end")


def test_a_daemon_whose_pidfile_moved_in_the_configuration_is_never_said_stopped(
        detached, public_dir):
    """[fingerd] pidfile changed while the daemon runs: the new pidfile names none, but a
    fingerd holding the configured addresses runs all the same: status says so, stop,
    reload and reopen fail, and the daemon is left serving."""
    d = detached
    assert run_fingerd("-c", d.config_file).returncode == 0
    pid = probe(d.pidfile)[1]
    moved = os.path.join(public_dir, "moved.pid")
    d.reconfigure(fingerd__pidfile=moved)
    status = d.ctl("status")
    said = f"fingerd is running (pid {pid}, on 127.0.0.1:"
    assert status.returncode == 0 and status.stdout.startswith(said), status.stdout
    assert f"though not by its pidfile {moved}: " in status.stdout
    for command in ("stop", "reload", "reopen"):
        failed = d.ctl(command)
        assert failed.returncode == 1 and failed.stderr.startswith(f"fingerd-ctl: {said}"), \
            (command, failed.stdout, failed.stderr)
        assert failed.stderr.endswith(f"stop it with: kill {pid}\n")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert probe(d.pidfile) == (RUNNING, pid)


def test_a_configuration_this_account_may_not_read_never_has_its_daemon_said_stopped(
        detached):
    """Another account than root may not read a configuration of mode 0600, which names
    the daemon's pidfile: the default one names no daemon, which is no reason to say
    that none runs (status said "fingerd is not running", exit 3; stop "not running",
    exit 0)."""
    if probe(DEFAULT_PIDFILE)[0] == RUNNING:
        pytest.skip(f"a fingerd runs by {DEFAULT_PIDFILE} on this machine")
    d = detached
    assert run_fingerd("-c", d.config_file).returncode == 0
    pid = probe(d.pidfile)[1]
    os.chmod(d.config_file, 0o600)
    for command in ("status", "stop", "reload", "reopen"):
        code, stderr = main_as_nobody(ctl.main, ["-c", d.config_file, command])
        assert code == ctl.EXIT_NO_PERMISSION, (command, stderr)
        assert stderr.endswith(
            f"fingerd-ctl: no fingerd runs by {DEFAULT_PIDFILE}, but this account may not "
            f"read {d.config_file}, which may name another pidfile: whether fingerd runs "
            f"cannot be told; run as root, or give --pidfile\n"), (command, stderr)
    assert probe(d.pidfile) == (RUNNING, pid)
