"""Shared fixtures: a real fingerd process on free loopback ports, and its directory;
the daemon tests' runs in other environments; the Hypothesis profile of this run
(``tests/support/fuzzing.py``: 1,000 examples a property under ``CI=true``); and
fingerd's modules compiled before the first test.

The helpers they are built from are in ``tests/support``.
"""

import compileall
import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from tests.support import ROOT, hang_nss
from tests.support.daemon import Daemons, end_by_pidfile
from tests.support.engines import RedisServer
from tests.support.environments import EnvironmentRuns
from tests.support.fuzzing import register_profiles
from tests.support.net import Ports

register_profiles()

# Assertions in the helper module that runs a whole scenario say what they compared.
pytest.register_assert_rewrite("tests.support.package_under_systemd")


def pytest_sessionstart(session):
    """Compile fingerd's modules, and the helpers tests run as programs, once: every
    daemon, ``fingerd -t`` and ``fingerd-ctl`` a test starts imports them anew, and
    where PYTHONDONTWRITEBYTECODE is set (as on the machine this suite was timed on)
    none of them writes what it compiled, so each compiled them all again (0.15 s a
    process; a clean clone has no __pycache__, which git and every copy of the tree
    for a build ignore)."""
    for package in ("fingerd", os.path.join("tests", "support")):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)


@pytest.fixture(scope="session")
def ports():
    """The session's free loopback ports: none is handed out twice."""
    return Ports()


@pytest.fixture(scope="session")
def environment_runs(request, tmp_path_factory):
    """The daemon tests' runs in other environments, started together by test_debian13's
    first test or else by the first test that asks for a run's ``result``, two at a time
    (``tests/support/environments.py``)."""
    runs = EnvironmentRuns(request.session.items, tmp_path_factory)
    yield runs
    runs.close()


@contextlib.contextmanager
def _readable_directory():
    path = tempfile.mkdtemp(prefix="fingerd-test-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def public_dir():
    """A temporary directory the unprivileged worker can read (pytest's own are 0700)."""
    with _readable_directory() as path:
        yield path


@pytest.fixture
def make_daemon(public_dir, ports):
    """Build daemons in a readable temporary directory; every one started is stopped by its
    pid, and whatever a test did, no daemon may have logged a traceback: a failure the
    daemon did not expect, which its clients may never have seen."""
    daemons = Daemons(public_dir, ports)
    yield daemons
    traceback = daemons.end()
    assert traceback is None, traceback


@pytest.fixture(scope="module")
def make_shared_daemon(ports):
    """``make_daemon`` for a daemon a module's tests share, for tests that only ask it (so
    that each finds it as a new one would be): stopped by its pid after the module's last
    test, and it may have logged no traceback."""
    with _readable_directory() as directory:
        daemons = Daemons(directory, ports)
        yield daemons
        traceback = daemons.end()
    assert traceback is None, traceback


@pytest.fixture
def detached(make_daemon, public_dir):
    """A configuration for a detached daemon, logging to a file; whatever it started is
    ended by its pid, and it may have logged no traceback."""
    log_file = os.path.join(public_dir, "fingerd.log")
    d = make_daemon(fingerd__log_file=log_file)
    d.logged = lambda: open(log_file, errors="replace").read() if os.path.exists(
        log_file) else ""
    yield d
    end_by_pidfile(d.pidfile)
    assert "Traceback" not in d.logged(), d.logged()


@pytest.fixture
def small_fs(public_dir):
    """A 256 KiB tmpfs mounted for the test and always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system to fill needs root")
    mount = pathlib.Path(public_dir) / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="session")
def hang_nss_library(tmp_path_factory):
    """The library that makes a real daemon's lookups of ``hung...`` names hang
    (``tests/support/hang_nss.c``), compiled once a session."""
    return hang_nss.build(str(tmp_path_factory.mktemp("hang_nss")))


@pytest.fixture
def daemon(make_daemon):
    return make_daemon().start()


@pytest.fixture(scope="module")
def shared_daemon(make_shared_daemon):
    """``daemon``, one for a module's tests that only ask it: that set no status and
    count nothing exactly."""
    return make_shared_daemon().start()


@pytest.fixture
def redis_server(public_dir, ports):
    """A real redis-server of the test's own on a free loopback port, ended by its pid."""
    server = RedisServer(public_dir, ports.take())
    yield server.start()
    server.stop()
