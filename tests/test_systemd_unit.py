"""init/fingerd.service: valid for systemd, hardened to an exposure of at most 2.5, and the
daemon still serves, sets, reloads and stops with no more than the unit leaves it."""

import ctypes
import os
import re
import socket
import stat
import subprocess
import sys

from tests.support import ROOT
from tests.support.daemon import run_fingerd
from tests.support.markers import needs_root, needs_tool
from tests.support.procfs import worker_of

UNIT = os.path.join(ROOT, "init", "fingerd.service")
PR_CAPBSET_DROP = 24
#: Linux's capability numbers, for the names the unit keeps.
CAPABILITIES = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5,
                "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
                "CAP_NET_BIND_SERVICE": 10}

pytestmark = needs_tool("systemd-analyze", "systemd")


def settings():
    """The unit's ``Key=value`` lines, a list of values per key."""
    found = {}
    with open(UNIT) as f:
        for line in f:
            key, equals, value = line.strip().partition("=")
            if equals and not key.startswith("#"):
                found.setdefault(key, []).append(value)
    return found


def analyze(*args, cwd):
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_the_unit_has_what_the_issue_asks(tmp_path):
    unit = settings()
    assert unit["ExecStart"][0].split()[0] == "fingerd", "no fixed path such as /usr/local"
    assert unit["ExecReload"] == ["fingerd-ctl -c ${CONFIG} reload"], "waits for the outcome"
    assert "/usr/local" not in open(UNIT).read().split("[Service]")[1].split("#")[0]
    assert unit["EnvironmentFile"] == ["-/etc/default/fingerd"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]
    assert unit["SystemCallFilter"][0].split()[0] == "@system-service"
    assert unit["ProtectSystem"] == ["strict"]
    for directory in ("StateDirectory", "RuntimeDirectory"):
        assert unit[directory] == ["fingerd"]
    # The log directory stays root:adm, as made: LogsDirectory= would chown it to root.
    assert "LogsDirectory" not in unit
    assert "-/var/log/fingerd" in unit["ReadWritePaths"][0].split()


def test_systemd_analyze_verify_reports_nothing(tmp_path):
    """Verified as installed with the command at an absolute path (systemd's own search
    path has no fingerd on a machine where pip installed it elsewhere)."""
    with open(UNIT) as f:
        text = f.read()
    copy = tmp_path / "fingerd.service"
    text = re.sub(r"^ExecStart=fingerd ", f"ExecStart={sys.executable} -m fingerd ", text,
                  flags=re.M)
    copy.write_text(re.sub(r"^ExecReload=fingerd-ctl ",
                           f"ExecReload={sys.executable} -m fingerd.ctl ", text, flags=re.M))
    result = analyze("verify", "--man=no", str(copy), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_systemd_analyze_security_exposure_is_at_most_2_5(tmp_path):
    result = analyze("security", "--offline=yes", "--no-pager", UNIT, cwd=tmp_path)
    found = re.search(r"Overall exposure level for fingerd\.service: (\d+\.\d+)",
                      result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.5


def keep_only(capabilities):
    """A preexec that leaves root only ``capabilities`` and the unit's UMask=, as
    systemd does before it runs ExecStart."""
    libc = ctypes.CDLL(None, use_errno=True)
    keep = {CAPABILITIES[name] for name in capabilities}
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())

    def preexec():
        for cap in range(last + 1):
            if cap not in keep and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
        os.umask(int(settings()["UMask"][0], 8))

    return preexec


@needs_root
def test_the_daemon_works_with_only_the_units_capabilities(make_daemon):
    capabilities = settings()["CapabilityBoundingSet"][0].split()
    d = make_daemon(fingerd__user="nobody")
    d.start(preexec=keep_only(capabilities))
    with open(f"/proc/{d.proc.pid}/status") as f:
        bounding = int(re.search(r"^CapBnd:\s*(\w+)", f.read(), re.M).group(1), 16)
    assert bounding == sum(1 << CAPABILITIES[name] for name in capabilities)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    # The setter's write, as root's, with the file's mode kept.
    assert d.setter(b"alice\r\nUnder the unit\r\n") == b"OK\r\n"
    with open(d.users_file) as f:
        assert "alice:Under the unit\n" in f.read()
    assert stat.S_IMODE(os.stat(d.users_file).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(d.pidfile).st_mode) == 0o644
    # The stop signals the worker, another account's process: CAP_KILL.
    worker = worker_of(d.proc.pid)
    assert d.stop() == 0
    assert not os.path.exists(f"/proc/{worker}")
    log = d.log()
    assert "Traceback" not in log and "not applied" not in log, log


def test_systemd_restarts_a_failed_start_only_where_a_retry_may_mend_it(make_daemon):
    """Restart=on-failure, but not for the exit statuses RestartPreventExitStatus= names: a
    start refused on its configuration (or users file, or an account) exits one of them,
    so that its reason is said once rather than every RestartSec= until systemd's start
    limit; one refused on a port another program holds exits another, and is retried."""
    unit = settings()
    assert unit["Restart"] == ["on-failure"]
    prevented = {int(status) for status in unit["RestartPreventExitStatus"][0].split()}
    d = make_daemon()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", d.setter_port))
        busy.listen(1)
        in_use = run_fingerd("-n", "-c", d.config_file)
    assert in_use.returncode != 0 and in_use.returncode not in prevented, in_use.stderr
    with open(d.users_file, "ab") as f:
        f.write(b"no colon here\n")
    invalid_users = run_fingerd("-n", "-c", d.config_file)
    assert invalid_users.returncode in prevented, invalid_users.stderr
    with open(d.config_file, "a") as f:
        f.write("bogus = 1\n")
    invalid_config = run_fingerd("-n", "-c", d.config_file)
    assert invalid_config.returncode in prevented, invalid_config.stderr
    assert "unknown key 'bogus'" in invalid_config.stderr


CLONE_NEWNET = 0x40000000


@needs_root
def test_root_without_net_bind_service_is_told_the_capability_not_to_be_root(make_daemon):
    """With the drop-in fingerd-sockets.conf the unit has no CAP_NET_BIND_SERVICE; a role
    whose .socket unit hands nothing over (stopped, or failed at systemd's start limit)
    binds its port below 1024 itself, and cannot. The start names the capability, where
    it told root to start as root, and exits with a status systemd does not retry: a
    retry every RestartSec= cannot mend it."""
    capabilities = [name for name in settings()["CapabilityBoundingSet"][0].split()
                    if name != "CAP_NET_BIND_SERVICE"]
    prevented = {int(status) for status in settings()["RestartPreventExitStatus"][0].split()}
    d = make_daemon(finger__listen="0.0.0.0:79")
    drop = keep_only(capabilities)
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec():
        # A network namespace of its own: port 79 is never bound on the machine's.
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        drop()

    started = subprocess.run([sys.executable, "-m", "fingerd", "-n", "-c", d.config_file],
                             cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60, preexec_fn=preexec)
    assert started.returncode in prevented, started.stderr
    assert started.stderr.count("\n") == 1, started.stderr
    assert "0.0.0.0:79 ([finger] listen)" in started.stderr
    assert "CAP_NET_BIND_SERVICE" in started.stderr and "need root" not in started.stderr
