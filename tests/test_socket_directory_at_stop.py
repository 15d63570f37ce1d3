"""The setter's Unix socket, and the directories the parent made for it at start or at a
reload, are gone after a stop, or once a reload drops the socket."""

import os
import socket
import stat
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.daemon import end_by_pidfile
from tests.support.markers import needs_root, needs_tool
from tests.support.polling import wait_until


def test_stop_removes_the_socket_and_the_directories_made_for_it(make_daemon, public_dir):
    run = os.path.join(public_dir, "run")
    path = os.path.join(run, "fingerd", "setter.sock")
    d = make_daemon(setter__socket=path).start()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert d.stop() == 0
    assert not os.path.lexists(path)
    assert not os.path.lexists(run)


def test_stop_keeps_a_directory_that_existed_before(make_daemon, public_dir):
    directory = os.path.join(public_dir, "sockets")
    os.mkdir(directory, 0o755)
    path = os.path.join(directory, "setter.sock")
    d = make_daemon(setter__socket=path).start()
    assert d.stop() == 0
    assert not os.path.lexists(path)
    assert os.listdir(directory) == []


def test_stop_keeps_a_directory_made_for_the_socket_that_holds_another_file(make_daemon,
                                                                              public_dir):
    directory = os.path.join(public_dir, "run")
    path = os.path.join(directory, "setter.sock")
    d = make_daemon(setter__socket=path).start()
    other = os.path.join(directory, "someone-elses")
    open(other, "w").close()
    assert d.stop() == 0
    assert os.listdir(directory) == ["someone-elses"]


@needs_tool("strace", "strace")
def test_a_start_that_fails_leaves_no_directory_made_for_the_socket(make_daemon, public_dir):
    directory = os.path.join(public_dir, "run")
    path = os.path.join(directory, "fingerd", "setter.sock")
    d = make_daemon(setter__socket=path, metrics__listen="")
    # The third bind, the Unix socket's after finger's and the setter's TCP ones, fails
    # as the kernel may fail it: once its directory is made.
    result = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=bind",
                             "-e", "inject=bind:error=EADDRINUSE:when=3", sys.executable,
                             "-m", "fingerd", "-n", "-c", d.config_file], cwd=ROOT,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr) == (
        1, f"fingerd: cannot listen on {path} ([setter] socket): Address already in use\n")
    assert not os.path.lexists(directory)


def set_through(path):
    """The setter's answer, through the Unix socket at ``path``, to setting alice."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b"alice\r\nThrough the new socket\r\n")
        return client.makefile("rb").read()


def reload_to(d, path):
    """Reload ``d`` with ``[setter] socket = path`` ("": none); the outcome must be applied."""
    result = d.reconfigure(setter__socket=path).ctl("reload")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_root
def test_stop_removes_the_directories_a_reload_made_for_a_new_socket(make_daemon,
                                                                     public_dir):
    run = os.path.join(public_dir, "run")
    path = os.path.join(run, "fingerd", "setter.sock")
    d = make_daemon().start()
    reload_to(d, path)
    assert set_through(path) == b"OK\r\n"
    assert d.stop() == 0
    assert not os.path.lexists(path)
    assert not os.path.lexists(run)


@needs_root
@pytest.mark.parametrize("made_by", ["start", "reload"])
def test_a_directory_made_for_a_socket_a_reload_drops_goes_with_the_socket(
        make_daemon, public_dir, made_by):
    run = os.path.join(public_dir, "run")
    path = os.path.join(run, "fingerd", "setter.sock")
    if made_by == "start":
        d = make_daemon(setter__socket=path).start()
    else:
        d = make_daemon().start()
        reload_to(d, path)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    reload_to(d, "")
    wait_until(lambda: not os.path.lexists(path), what="the dropped socket removed")
    wait_until(lambda: not os.path.lexists(run), what="the directories made for it removed")
    assert d.setter(b"alice\r\nStill set by TCP\r\n") == b"OK\r\n"
    assert d.stop() == 0


@needs_root
@needs_tool("strace", "strace")
def test_a_reload_refused_at_the_sockets_bind_leaves_no_directory_made_for_it(
        make_daemon, public_dir):
    run = os.path.join(public_dir, "run")
    path = os.path.join(run, "fingerd", "setter.sock")
    # The fourth bind, the reload's Unix socket's after the start's finger, setter and
    # metrics ones, fails as the kernel may fail it: once its directory is made.
    d = make_daemon().start(wrapper=["strace", "-f", "-qq", "-o", os.devnull, "-e",
                                     "trace=bind", "-e", "inject=bind:error=EADDRINUSE:when=4"])
    try:
        result = d.reconfigure(setter__socket=path).ctl("reload")
        assert (result.returncode, result.stderr) == (
            1, f"fingerd-ctl: reload refused: cannot listen on {path} ([setter] socket): "
               f"Address already in use\n")
        assert not os.path.lexists(run)
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    finally:
        end_by_pidfile(d.pidfile)  # fingerd's own pid: TERM to strace would not reach it
    assert d.proc.wait(30) == 0
