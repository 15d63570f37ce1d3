"""The Debian package fingerd-py (docs/guide.md, "The Debian package"): built from a
copy of the tree, checked by lintian, installed with apt beside netkit's fingerd,
serving, removed and purged as an operator would."""

import contextlib
import glob
import grp
import os
import pwd
import shutil
import stat
import subprocess

import pytest

from tests.support import ROOT
from tests.support.chroot import Chroot
from tests.support.markers import needs_root, needs_tool
from tests.support.net import exchange, skip_unless_free
from tests.support.package_under_systemd import booted_for_package, operate
from tests.support.polling import wait_until
from tests.support.procfs import proc_status, worker_of
from tests.support.source_tree import copy_source

PACKAGE = "fingerd-py"
#: Debian's own tools only: a Python of pyenv's or a pip-installed fingerd on the PATH
#: must not stand in for the package's.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
       "DEBIAN_FRONTEND": "noninteractive"}
PIDFILE = "/run/fingerd.pid"
#: The roles a socket unit is shipped for (fingerd-ROLE.socket).
SOCKET_ROLES = ("finger", "setter", "metrics", "web")
#: A policy-rc.d that lets invoke-rc.d act on fingerd alone. A machine's own (a
#: container's denies every service) is replaced only inside a private mount namespace
#: made for one apt-get; a machine with none (a fresh chroot, where invoke-rc.d cannot
#: tell the runlevel and so starts nothing unless a policy allows it) has this one for
#: the length of one apt-get.
POLICY_RC = "/usr/sbin/policy-rc.d"
ALLOW_FINGERD = """#!/bin/sh
for arg; do [ "$arg" = fingerd ] && exit 0; done
exit 101
"""

#: Debian 12 as the package built here needs it, with systemd to boot it with
#: (tests/support/booted.py).
BOOKWORM_PACKAGES = ("adduser", "dbus", "procps", "python3", "python3-daemon",
                     "python3-prometheus-client", "systemd", "systemd-sysv")

pytestmark = [needs_root, needs_tool("dpkg-buildpackage", "dpkg-dev"),
              needs_tool("dh", "debhelper"), needs_tool("lintian", "lintian"),
              needs_tool("logrotate", "logrotate"), needs_tool("finger", "finger"),
              needs_tool("in.fingerd", "fingerd"), needs_tool("systemd-analyze", "systemd"),
              needs_tool("git", "git")]


def run(*argv, timeout=120, **kw):
    return subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


#: A python3 (and python3.X) first on the builder's PATH that lacks Debian's build
#: modules, as pyenv's do: debian/rules must build with Debian's own.
FOREIGN_PYTHON = """#!/bin/sh
exec /usr/bin/{name} -S "$@"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``dpkg-buildpackage -b -us -uc`` in a copy of the tree, with a foreign python3
    first on the PATH: the .deb and .changes, and the tree after the build."""
    top = tmp_path_factory.mktemp("deb")
    tree = copy_source(top / "fingerd")
    foreign = top / "foreign-bin"
    foreign.mkdir()
    for interpreter in glob.glob("/usr/bin/python3*"):
        name = os.path.basename(interpreter)
        if name.startswith("python3") and not name.endswith("-config"):
            (foreign / name).write_text(FOREIGN_PYTHON.format(name=name))
            (foreign / name).chmod(0o755)
    result = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree,
                            env={**ENV, "PATH": f"{foreign}:{ENV['PATH']}"},
                            capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    debs = list(top.glob(f"{PACKAGE}_*_all.deb"))
    assert len(debs) == 1
    return debs[0], next(top.glob(f"{PACKAGE}_*.changes")), tree


def test_what_the_build_leaves_in_the_tree_is_ignored_by_git(built):
    tree = built[2]
    source = set(subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True,
                                text=True, check=True).stdout.splitlines())
    left = sorted(str(path.relative_to(tree)) for path in tree.rglob("*")
                  if path.is_file() and str(path.relative_to(tree)) not in source)
    assert left, "the build left nothing: the check would be empty"
    checked = subprocess.run(["git", "-C", ROOT, "check-ignore", "--no-index", "--stdin"],
                             input="\n".join(left), capture_output=True, text=True)
    ignored = set(checked.stdout.splitlines())
    assert [path for path in left if path not in ignored] == []


def test_lintian_reports_nothing(built):
    result = run("lintian", "--allow-root", "--info", "--pedantic", str(built[1]),
                 timeout=300)
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


def test_the_package_has_no_file_in_common_with_netkits_fingerd(built):
    listing = run("dpkg-deb", "-c", str(built[0])).stdout.splitlines()
    files = {line.split()[-1].lstrip(".") for line in listing if not line.startswith("d")}
    netkit = run("dpkg-query", "-L", "fingerd")
    assert netkit.returncode == 0, "netkit's fingerd is not installed"
    assert "/usr/sbin/in.fingerd" in netkit.stdout
    assert "/usr/bin/fingerd" in files and "/etc/init.d/fingerd" in files
    assert not files & set(netkit.stdout.splitlines())


def apt_get(*args):
    """apt-get with invoke-rc.d allowed to start and stop fingerd, as on a Debian host."""
    if os.path.lexists(POLICY_RC):
        script = ("set -e; policy=$(mktemp); cat >\"$policy\"; chmod 755 \"$policy\"; "
                  f"mount --bind \"$policy\" {POLICY_RC}; rm \"$policy\"; "
                  "exec apt-get -y -q \"$@\"")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script, "apt-get", *args], input=ALLOW_FINGERD, env=ENV,
                              capture_output=True, text=True, timeout=600)
    fd = os.open(POLICY_RC, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ALLOW_FINGERD)
        return run("apt-get", "-y", "-q", *args, timeout=600)
    finally:
        os.unlink(POLICY_RC)


def daemon_pid():
    try:
        with open(PIDFILE) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def mode_owner(path):
    st = os.lstat(path)
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def finger(query):
    result = run("finger", query, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def installed(built):
    """The package installed with apt (its postinst starting the service), and at the end
    purged, with any daemon it left ended."""
    if run("dpkg-query", "-W", "-f=${Status}", PACKAGE).stdout.startswith("install ok"):
        pytest.skip(f"{PACKAGE} is already installed here: not touching it")
    for path in ("/etc/fingerd", "/var/lib/fingerd", "/etc/init.d/fingerd", PIDFILE):
        if os.path.lexists(path):
            pytest.skip(f"{path} exists (a fingerd installed by hand?): not touching it")
    skip_unless_free("0.0.0.0", 79)
    try:
        result = apt_get("install", "--no-install-recommends", str(built[0]))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield result
    finally:
        apt_get("purge", PACKAGE)
        pid = daemon_pid()
        if pid is not None and "fingerd" in open(f"/proc/{pid}/cmdline").read():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)


def test_install_serve_set_rotate_remove_purge(installed, tmp_path):
    # The account: a system account of its own, no home, no shell.
    account = pwd.getpwnam("fingerd")
    assert account.pw_uid < 1000 and account.pw_dir == "/nonexistent"
    assert account.pw_shell == "/usr/sbin/nologin"
    assert grp.getgrgid(account.pw_gid).gr_name == "fingerd"
    # The files and their modes.
    expect = {
        "/usr/bin/fingerd": (0o755, "root", "root"),
        "/usr/bin/fingerd-ctl": (0o755, "root", "root"),
        "/etc/init.d/fingerd": (0o755, "root", "root"),
        "/etc/fingerd/fingerd.conf": (0o644, "root", "root"),
        "/etc/default/fingerd": (0o644, "root", "root"),
        "/etc/logrotate.d/fingerd": (0o644, "root", "root"),
        "/lib/systemd/system/fingerd.service": (0o644, "root", "root"),
        "/usr/share/man/man8/fingerd.8.gz": (0o644, "root", "root"),
        "/usr/share/man/man8/fingerd-ctl.8.gz": (0o644, "root", "root"),
        "/usr/share/man/man5/fingerd.conf.5.gz": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/alerts.yml": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/grafana-dashboard.json.gz": (0o644, "root", "root"),
        # What an operator reads: how the package differs, and the guide.
        "/usr/share/doc/fingerd-py/README.Debian.gz": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/README.md.gz": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/guide.md.gz": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/hosts.md.gz": (0o644, "root", "root"),
        "/usr/share/doc/fingerd-py/examples/haproxy-fingerd.cfg": (0o644, "root", "root"),
        # Socket activation (fingerd(8)): the units, and the drop-in for when they are used.
        **{f"/lib/systemd/system/fingerd-{role}.socket": (0o644, "root", "root")
           for role in SOCKET_ROLES},
        "/usr/share/doc/fingerd-py/examples/fingerd-sockets.conf": (0o644, "root", "root"),
        "/var/lib/fingerd": (0o755, "root", "root"),
        "/var/lib/fingerd/users": (0o644, "root", "root"),
        "/var/log/fingerd": (0o750, "root", "adm"),
    }
    assert {path: mode_owner(path) for path in expect} == expect
    # The unit runs the package's commands, not those of a /usr/local/bin first in
    # systemd's search path.
    with open("/lib/systemd/system/fingerd.service") as f:
        commands = [line.partition("=")[2].split()[0] for line in f
                    if line.startswith("Exec")]
    assert commands == ["/usr/bin/fingerd", "/usr/bin/fingerd-ctl"]
    verify = run("systemd-analyze", "verify", "/lib/systemd/system/fingerd.service",
                 *(f"/lib/systemd/system/fingerd-{role}.socket" for role in SOCKET_ROLES))
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stderr
    # Shipped, not enabled: fingerd binds its configuration until the operator says so.
    assert not glob.glob("/etc/systemd/system/*/fingerd-*.socket")
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    for conffile in ("/etc/fingerd/fingerd.conf", "/etc/default/fingerd",
                     "/etc/init.d/fingerd", "/etc/logrotate.d/fingerd"):
        assert conffile in conffiles
    # The postinst started the service: a root parent and a worker as fingerd, logging
    # to a file as logrotate would have created it.
    assert "Starting finger daemon" in installed.stdout
    pid = wait_until(daemon_pid, what="the packaged daemon")
    assert mode_owner("/var/log/fingerd/fingerd.log") == (0o640, "root", "adm")
    worker = worker_of(pid)
    assert proc_status(worker)["Uid"].split()[0] == str(account.pw_uid)
    # The setter writes the state directory's users file; Debian's finger reads it back.
    result = run("fingerd-ctl", "set", "alice", "Installed from the package")
    assert result.returncode == 0, result.stdout + result.stderr
    with open("/var/lib/fingerd/users") as f:
        assert "alice:Installed from the package\n" in f.read()
    assert "Installed from the package" in finger("alice@localhost")
    assert "Installed from the package" in exchange(79, b"alice\r\n", host="::1").decode()
    assert mode_owner("/var/lib/fingerd/users") == (0o644, "root", "root")
    # The init script stops and starts it.
    assert run("/etc/init.d/fingerd", "stop").returncode == 0
    assert run("/etc/init.d/fingerd", "status").returncode == 3
    assert run("/etc/init.d/fingerd", "start").returncode == 0
    assert "Installed from the package" in finger("alice@localhost")
    # logrotate's configuration is valid, and a rotation has the daemon log to a new file.
    check = run("logrotate", "-d", "/etc/logrotate.d/fingerd")
    assert check.returncode == 0 and "error" not in check.stderr.lower(), check.stderr
    state = str(tmp_path / "logrotate.state")
    assert run("logrotate", "-f", "-s", state, "/etc/logrotate.d/fingerd").returncode == 0
    assert os.path.exists("/var/log/fingerd/fingerd.log.1")
    assert run("fingerd-ctl", "set", "bob", "After the rotation").returncode == 0

    def logged_after_rotation():
        with open("/var/log/fingerd/fingerd.log") as f:
            return "set the status of bob" in f.read()

    wait_until(logged_after_rotation, what="the reopened log file")
    assert mode_owner("/var/log/fingerd/fingerd.log.1") == (0o640, "root", "adm")
    assert mode_owner("/var/log/fingerd/fingerd.log") == (0o640, "root", "adm")
    # Remove stops the daemon and keeps the configuration and the statuses.
    pid = daemon_pid()
    result = apt_get("remove", PACKAGE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the daemon to stop")
    assert os.path.exists("/etc/fingerd/fingerd.conf")
    assert os.path.exists("/var/lib/fingerd/users")
    # Purge removes the configuration, the statuses and the logs; the account stays.
    result = apt_get("purge", PACKAGE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in ("/etc/fingerd", "/etc/default/fingerd", "/etc/init.d/fingerd",
                 "/etc/logrotate.d/fingerd", "/var/lib/fingerd", "/var/log/fingerd"):
        assert not os.path.lexists(path), path
    assert pwd.getpwnam("fingerd").pw_uid == account.pw_uid


@needs_tool("debootstrap", "debootstrap")
def test_systemd_on_debian_12_runs_the_package_as_on_debian_13(built, tmp_path):
    """The checks of tests/test_debian13.py under a booted systemd, on Debian 12 (its
    systemd 252) with the package built on this machine."""
    bookworm = Chroot("bookworm", BOOKWORM_PACKAGES).make()
    deb = f"/build/{built[0].name}"
    os.makedirs(bookworm.host_path("/build"), exist_ok=True)
    shutil.copy(built[0], bookworm.host_path(deb))
    with booted_for_package(bookworm.path, str(tmp_path / "boot.log")) as system:
        operate(system, deb, bookworm.host_path("/var/log/fingerd/fingerd.log"))
