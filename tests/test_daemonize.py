"""A detached start (``fingerd`` without ``-n``): the daemon's life once it no longer
needs the process that started it."""

import os
import signal
import subprocess
import sys

import pytest

from fingerd.process.pidfile import RUNNING, probe, read_pid
from tests.support import ROOT
from tests.support.daemon import held_until
from tests.support.markers import needs_root
from tests.support.polling import wait_until


@needs_root
def test_the_starting_process_killed_while_it_waits_leaves_the_daemon_serving(detached,
                                                                              tmp_path):
    """Its word that the daemon serves finds no reader (EPIPE): the daemon serves on, as
    only TERM and INT stop it, and says once, as a warning, that nobody was told."""
    d = detached
    marker = os.path.join(d.dir, "serve")
    env = {**os.environ, **held_until(str(tmp_path / "site"),
                                      "fingerd.serving.assembly:Service.start", marker)}
    starting = subprocess.Popen([sys.executable, "-m", "fingerd", "-c", d.config_file],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        daemon = wait_until(lambda: read_pid(d.pidfile) not in (None, starting.pid) and
                            read_pid(d.pidfile), what="the detached daemon's pidfile")
    finally:
        starting.kill()
    assert starting.wait(10) == -signal.SIGKILL, "killed before it heard a word"
    open(marker, "w").close()
    gone = "WARNING the process that started fingerd is gone: nobody was told that it serves"
    wait_until(lambda: gone in d.logged() or " INFO stopped" in d.logged(), timeout=30,
               what="the worker ready, and what the daemon made of it")
    assert " INFO stopped" not in d.logged(), d.logged()
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert probe(d.pidfile) == (RUNNING, daemon)
    assert d.logged().count(gone) == 1
    os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: " INFO stopped" in d.logged(), timeout=20, what="the daemon to stop")
    assert not os.path.exists(d.pidfile)


def test_a_configuration_named_relative_to_where_fingerd_started_is_read_again_at_a_reload(
        detached):
    """The daemon works in /: the path it was given is made absolute at start, so that
    each reload reads the same file again."""
    d = detached
    started = subprocess.run([sys.executable, "-m", "fingerd", "-c",
                              os.path.basename(d.config_file)],
                             cwd=d.dir, env={**os.environ, "PYTHONPATH": ROOT}, timeout=60,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    d.reconfigure(output__replace="Happy => Glad")
    reloaded = d.ctl("reload")
    assert (reloaded.returncode, reloaded.stderr) == (0, "")
    assert f"configuration {d.config_file} applied" in reloaded.stdout
    assert d.finger(b"alice\r\n") == b"Glad and well\r\n"


def test_a_detached_start_that_fails_leaves_no_setter_socket_nor_its_directory(detached,
                                                                               ports):
    """The worker fails once the parent has bound and detached: the process that was
    started held the listening sockets too while it waited, so that the daemon found the
    setter's Unix socket still served and left it, and the directories made for it."""
    pytest.importorskip("redis")
    d = detached
    made = os.path.join(d.dir, "run")
    d.reconfigure(setter__socket=os.path.join(made, "fingerd", "setter.sock"),
                  store__backend="redis", store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    started = subprocess.run([sys.executable, "-m", "fingerd", "-c", d.config_file],
                             cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True)
    assert started.returncode == 1 and "during startup" in started.stderr, started.stderr
    wait_until(lambda: " INFO stopped" in d.logged(), timeout=20, what="the daemon to stop")
    assert not os.path.lexists(made), list(os.walk(made))
