"""The setter's Unix socket, and the directory the parent made for it, are gone after a stop."""

import os
import stat
import subprocess
import sys

from tests.support import ROOT
from tests.support.markers import needs_tool


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
