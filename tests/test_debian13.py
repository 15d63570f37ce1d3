"""fingerd on Debian 13 "trixie", the current stable: Python 3.13, python3-daemon 3.1,
python3-prometheus-client 0.21, in chroots made with debootstrap. The daemon tests run
in one with deprecation warnings as errors; in another, the Debian package is built,
checked by trixie's lintian, installed, started by its init script, answers, is killed
and purged; then, the chroot booted with systemd as its PID 1 (tests/support/booted.py),
installed again and run by systemd, with README's daily commands and with its sockets
held by systemd, removed, installed again and upgraded."""

import glob
import os
import re
import signal
import stat

import pytest

from tests.support.chroot import Chroot, assert_pytest_passed, purge
from tests.support.markers import needs_root, needs_tool
from tests.support.net import exchange, skip_unless_free
from tests.support.package_under_systemd import booted_for_package, operate
from tests.support.polling import wait_until
from tests.support.procfs import ended, worker_of

RELEASE = "trixie"
#: What the tests below need inside: the daemon's libraries, pytest, the tools that
#: build and install the package, and systemd to boot with. (lintian, which debootstrap
#: fails to configure among them, is installed with apt-get by its test.)
PACKAGES = ("python3", "python3-daemon", "python3-prometheus-client", "python3-pytest",
            "python3-hypothesis", "build-essential", "dpkg-dev", "debhelper", "dh-python",
            "pybuild-plugin-pyproject", "python3-all", "python3-setuptools", "adduser",
            "sysvinit-utils", "procps", "systemd", "systemd-sysv", "dbus")
#: Tests that start the daemon detached and in the foreground, answer, set and scrape.
DAEMON_TESTS = ("tests/test_lifecycle.py", "tests/test_ctl.py", "tests/test_metrics.py",
                "tests/test_finger_service.py",
                "tests/test_output.py::test_the_kept_runs_are_this_pythons_invisible_characters")
#: What they need, in a chroot of their own: the daemon's libraries and pytest. Nothing
#: that the package's tests install, start or boot in theirs (a systemd that empties /tmp,
#: an init script that ctl's hints name) reaches them, so they run meanwhile.
DAEMON_PACKAGES = ("python3", "python3-daemon", "python3-prometheus-client",
                   "python3-pytest", "python3-hypothesis", "procps")
PIDFILE = "/run/fingerd.pid"

pytestmark = [needs_root, needs_tool("debootstrap", "debootstrap"), needs_tool("git", "git")]


@pytest.fixture(scope="module", autouse=True)
def daemon_tests_started(environment_runs):
    """With this module's first test, the daemon tests' chroot made and the runs in other
    environments started: trixie's goes on while the package is built, checked and
    booted."""
    Chroot(RELEASE, DAEMON_PACKAGES).make()
    environment_runs.start()


@pytest.fixture(scope="module")
def trixie():
    return Chroot(RELEASE, PACKAGES).make()


@pytest.mark.parametrize("packages", [PACKAGES, DAEMON_PACKAGES],
                         ids=["package", "daemon_tests"])
def test_trixie_has_the_versions_the_package_is_tested_on(packages):
    script = ("python3 -c 'import sys, importlib.metadata as m; print(sys.version_info[:2], "
              "m.version(\"python-daemon\"), m.version(\"prometheus_client\"))'")
    result = Chroot(RELEASE, packages).make().run(script)
    assert result.returncode == 0, result.stderr
    python, daemon, prometheus = re.match(r"\((\d+, \d+)\) (\S+) (\S+)",
                                          result.stdout).groups()
    assert python == "3, 13"
    assert daemon.startswith("3.") and prometheus.startswith("0.2")


@pytest.fixture(scope="module")
def trixie_deb(trixie):
    """The package built in the chroot, as built on trixie: its path inside."""
    build = trixie.copy_checkout("/build/fingerd")
    for old in os.listdir(trixie.host_path("/build")):
        if old.endswith((".deb", ".changes", ".buildinfo")):
            os.remove(os.path.join(trixie.host_path("/build"), old))
    # With a python3 first on the PATH that lacks Debian's build modules, as pyenv's:
    # debian/rules must build with Debian's own (see tests/test_debian_package.py).
    foreign = "/build/foreign-bin"
    os.makedirs(trixie.host_path(foreign), exist_ok=True)
    for interpreter in glob.glob(trixie.host_path("/usr/bin/python3*")):
        name = os.path.basename(interpreter)
        if not name.endswith("-config"):
            with open(trixie.host_path(f"{foreign}/{name}"), "w") as f:
                f.write(f'#!/bin/sh\nexec /usr/bin/{name} -S "$@"\n')
            os.chmod(trixie.host_path(f"{foreign}/{name}"), 0o755)
    built = trixie.run(f"cd {build} && PATH={foreign}:$PATH dpkg-buildpackage -b -us -uc",
                       timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    debs = [name for name in os.listdir(trixie.host_path("/build")) if name.endswith(".deb")]
    assert len(debs) == 1, debs
    return f"/build/{debs[0]}"


def test_lintian_of_trixie_reports_nothing_on_the_package_built_there(trixie, trixie_deb):
    installed = trixie.run("command -v lintian >/dev/null || "
                           "apt-get install -y -q --no-install-recommends lintian", timeout=600)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    result = trixie.run("cd /build && lintian --allow-root --info --pedantic *.changes",
                        timeout=300)
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


@pytest.fixture
def package_on_trixie(trixie, trixie_deb):
    """The package installed in the chroot; at the end purged, with any daemon it left
    ended by its pid."""
    skip_unless_free("0.0.0.0", 79)
    left = purge(trixie.run, "fingerd-py")  # by a run cut short
    assert left is None, left
    try:
        installed = trixie.run(f"dpkg -i {trixie_deb}", timeout=300)
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        yield trixie
    finally:
        pid = daemon_pid(trixie)
        left = purge(trixie.run, "fingerd-py")
        if pid is not None and os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the daemon's end")
    assert left is None, left


def daemon_pid(chroot):
    try:
        with open(chroot.host_path(PIDFILE)) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def test_the_package_builds_installs_starts_answers_and_purges_on_trixie(package_on_trixie):
    chroot = package_on_trixie
    assert chroot.run("test -x /usr/bin/fingerd && test -x /etc/init.d/fingerd && "
                      "test -f /var/lib/fingerd/users").returncode == 0
    started = chroot.run("/etc/init.d/fingerd start", timeout=60)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = wait_until(lambda: daemon_pid(chroot), what="the packaged daemon on trixie")
    log_file = os.stat(chroot.host_path("/var/log/fingerd/fingerd.log"))
    assert stat.S_IMODE(log_file.st_mode) == 0o640 and log_file.st_uid == 0
    assert chroot.run("getent group adm").stdout.split(":")[2] == str(log_file.st_gid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"/usr/bin/fingerd" in f.read()
    set_status = chroot.run("fingerd-ctl set alice 'Served on trixie'")
    assert set_status.returncode == 0, set_status.stdout + set_status.stderr
    assert exchange(79, b"alice\r\n") == b"Served on trixie\r\n"
    assert exchange(79, b"alice\r\n", host="::1") == b"Served on trixie\r\n"
    reopen = chroot.run("fingerd-ctl reopen")
    assert reopen.returncode == 0, reopen.stdout + reopen.stderr
    status = chroot.run("/etc/init.d/fingerd status")
    assert status.returncode == 0 and "running" in status.stdout, status.stdout
    stopped = chroot.run("/etc/init.d/fingerd stop", timeout=60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the daemon to stop")
    assert chroot.run("/etc/init.d/fingerd status").returncode == 3
    # A daemon killed (a crash) leaves what a stop removes from /run: the purge removes it.
    again = chroot.run("/etc/init.d/fingerd start && fingerd-ctl reload", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    pid = wait_until(lambda: daemon_pid(chroot), what="the daemon started again")
    worker = worker_of(pid)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: ended(pid) and ended(worker), what="the killed daemon's end")
    left = os.listdir(chroot.host_path("/run"))
    assert {"fingerd.pid", "fingerd.pid.lock", "fingerd.pid.reload"} <= set(left), left
    purged = chroot.run("dpkg --purge fingerd-py", timeout=300)
    assert purged.returncode == 0, purged.stdout[-3000:] + purged.stderr[-3000:]
    for path in ("/etc/fingerd", "/var/lib/fingerd", "/var/log/fingerd"):
        assert not os.path.lexists(chroot.host_path(path)), path
    left = os.listdir(chroot.host_path("/run"))
    assert [name for name in left if "fingerd" in name] == []


def test_systemd_runs_the_package_confined_with_readmes_commands_its_sockets_and_removal(
        trixie, trixie_deb, tmp_path):
    with booted_for_package(trixie.path, str(tmp_path / "boot.log")) as system:
        operate(system, trixie_deb, trixie.host_path("/var/log/fingerd/fingerd.log"))


def run_daemon_tests(tmp_path_factory):
    """DAEMON_TESTS run in their chroot on a loopback of their own, deprecation warnings
    errors: their outcome."""
    chroot = Chroot(RELEASE, DAEMON_PACKAGES).make()
    tree = chroot.copy_checkout("/src")
    return chroot.run(f"cd {tree} && python3 -m pytest -q -p no:cacheprovider "
                      f"-W error::DeprecationWarning {' '.join(DAEMON_TESTS)}",
                      timeout=900, env={"PYTHONWARNINGS": "error::DeprecationWarning"},
                      own_loopback=True)


def test_the_daemon_tests_pass_on_trixie_with_deprecations_as_errors(environment_runs):
    assert_pytest_passed(environment_runs.result(__name__))
