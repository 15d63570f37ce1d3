"""The Debian package on a host where systemd runs (booted.py), used as an operator of
Debian 12 or 13 uses it: installed, confined by its unit, README's daily commands, its
sockets as guide.md enables them, removed, installed again and upgraded under a client,
then upgraded over a configuration fingerd -t rejects.
tests/test_debian_package.py and tests/test_debian13.py run it on their releases.
"""

import contextlib
import re
import threading
import time

from tests.support.booted import Booted
from tests.support.chroot import purge
from tests.support.net import can_connect, exchange, skip_unless_free
from tests.support.polling import wait_until

#: The unit's CapabilityBoundingSet as a mask: CAP_KILL, CAP_SETGID, CAP_SETUID,
#: CAP_SETPCAP and CAP_NET_BIND_SERVICE (bits 5, 6, 7, 8 and 10).
UNIT_CAPABILITIES = 0x5E0
NET_BIND_SERVICE = 1 << 10
#: Queries the client sends at most while the package is upgraded under it, one each
#: QUERY_INTERVAL seconds.
QUERIES_AT_MOST = 20000
QUERY_INTERVAL = 0.005
#: The socket units guide.md ("Sockets from systemd") enables.
SOCKETS = ("fingerd-finger.socket", "fingerd-setter.socket", "fingerd-metrics.socket")
#: The package's configuration file, and where it is kept while it is made invalid.
CONFIG = "/etc/fingerd/fingerd.conf"
KEPT_CONFIG = "/run/fingerd-tests.conf"
#: What the init script and the postinst say when fingerd -t rejects that file, and
#: fingerd -t's line that follows.
REFUSED = "fingerd: not (re)started, fingerd -t finds:\n"
REJECTED = "unknown key 'treads'\n"


@contextlib.contextmanager
def booted_for_package(tree, boot_log):
    """The Debian tree at ``tree`` booted with systemd; at the end the package purged and
    the operator's drop-in removed, then systemd killed with everything it runs."""
    for host, port in (("0.0.0.0", 79), ("127.0.0.1", 1079), ("127.0.0.1", 9179)):
        skip_unless_free(host, port)
    with Booted(tree, boot_log) as system:
        left = purge(system.run, "fingerd-py")  # by a run cut short
        assert left is None, left
        try:
            yield system
        finally:
            left = purge(system.run, "fingerd-py")
            system.run("rm -rf /etc/systemd/system/fingerd.service.d")
        # Checked once the body has passed: a failure of its own is the one to see.
        assert left is None, left


@contextlib.contextmanager
def rejected_configuration(system):
    """The package's configuration with a key that fingerd -t rejects, put back after."""
    broken = system.run(f"cp {CONFIG} {KEPT_CONFIG} && echo 'treads = 4' >> {CONFIG}")
    assert broken.returncode == 0, broken.stderr
    try:
        yield
    finally:
        system.run(f"mv {KEPT_CONFIG} {CONFIG}")


def active(system, *units):
    return system.run("systemctl is-active " + " ".join(units)).stdout.split()


def process_status(system, pid):
    lines = system.run(f"cat /proc/{pid}/status").stdout.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def operate(system, deb, log_file):
    """Install the package ``deb`` (its path inside) on the booted ``system`` and use it as
    README and guide.md say, up to its removal, an install again and upgrades;
    ``log_file`` is where the host reads the daemon's log."""

    def log():
        try:
            with open(log_file) as f:
                return f.read()
        except FileNotFoundError:  # rotated, not yet reopened
            return ""

    def main_pid():
        return int(system.run("systemctl show -p MainPID --value fingerd").stdout)

    def log_modes():
        return system.run("stat -c '%a %U:%G %n' /var/log/fingerd /var/log/fingerd/*"
                          ).stdout.splitlines()

    installed = system.run(f"dpkg -i {deb}", timeout=300)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    # The postinst enabled the unit and started it (Type=notify: started once it answers).
    assert system.run("systemctl is-enabled fingerd").stdout.strip() == "enabled"
    assert active(system, "fingerd.service") == ["active"]
    # The log directory and file as the postinst made them, a start under the unit after.
    assert log_modes() == ["750 root:adm /var/log/fingerd",
                           "640 root:adm /var/log/fingerd/fingerd.log"]
    assert system.run("fingerd-ctl set alice 'Run by systemd'").returncode == 0
    assert exchange(79, b"alice\r\n") == b"Run by systemd\r\n"
    # Under the unit's confinement: its bounding set, no new privileges, a seccomp
    # filter; the worker runs as fingerd, under its own filter as well.
    parent = process_status(system, main_pid())
    assert int(parent["CapBnd"], 16) == UNIT_CAPABILITIES
    assert parent["NoNewPrivs"] == "1" and parent["Seccomp"] == "2"
    worker = re.findall(r"worker (\d+) ready", log())[-1]
    uid = system.run("id -u fingerd").stdout.strip()
    confined = process_status(system, worker)
    assert confined["Uid"].split()[0] == uid and confined["Seccomp"] == "2"
    if "Seccomp_filters" in parent:  # counted by Linux 5.9 and later
        assert int(confined["Seccomp_filters"]) > int(parent["Seccomp_filters"])
    # ~@resources refuses the writer child SCHED_IDLE: the parent says so once.
    assert system.run("fingerd-ctl set bob 'Set twice'").returncode == 0
    wait_until(lambda: "set the status of bob" in log(), what="the second set's log line")
    assert log().count("not at SCHED_IDLE") == 1
    # systemctl reload: a new worker under the same parent, the answers the same.
    before = main_pid()
    reloaded = system.run("systemctl reload fingerd", timeout=60)
    assert reloaded.returncode == 0, reloaded.stderr
    assert main_pid() == before and "applied: worker" in log()
    assert exchange(79, b"alice\r\n") == b"Run by systemd\r\n"
    # README's daily commands: the init script goes through systemctl, fingerd-ctl reload
    # keeps the parent systemd watches, fingerd-ctl reopen starts a new log file after a
    # rotation, and fingerd-ctl stop is a stop, not a failure.
    assert system.run("/etc/init.d/fingerd stop", timeout=60).returncode == 0
    assert active(system, "fingerd.service") == ["inactive"]
    assert system.run("/etc/init.d/fingerd status").returncode == 3
    started = system.run("/etc/init.d/fingerd start", timeout=60)
    assert started.returncode == 0 and "(via systemctl)" in started.stdout, started.stdout
    assert system.run("fingerd-ctl status").returncode == 0
    # A restart with a configuration fingerd -t rejects is refused, with its reason,
    # before the script hands it to systemctl: the daemon runs on.
    before = main_pid()
    with rejected_configuration(system):
        for action in ("restart", "try-restart"):
            refused = system.run(f"/etc/init.d/fingerd {action}", timeout=60)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert refused.stderr.startswith(REFUSED), refused.stderr
            assert REJECTED in refused.stderr, refused.stderr
            assert main_pid() == before and active(system, "fingerd.service") == ["active"]
    assert system.run("fingerd-ctl reload", timeout=60).returncode == 0
    assert main_pid() == before and active(system, "fingerd.service") == ["active"]
    assert exchange(79, b"alice\r\n") == b"Run by systemd\r\n"
    rotated = system.run("mv /var/log/fingerd/fingerd.log /var/log/fingerd/fingerd.log.1 && "
                         "fingerd-ctl reopen && fingerd-ctl set dave 'After the rotation'")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    wait_until(lambda: "set the status of dave" in log(), what="the log line in a new file")
    assert system.run("fingerd-ctl stop", timeout=60).returncode == 0
    wait_until(lambda: active(system, "fingerd.service") == ["inactive"],
               what="the service to stop")
    shown = system.run("systemctl show -p Result -p NRestarts fingerd").stdout.split()
    assert sorted(shown) == ["NRestarts=0", "Result=success"]
    # The sockets, used as guide.md says.
    guide = system.run("systemctl stop fingerd && systemctl enable --now " + " ".join(SOCKETS)
                       + " && install -D -m 644 /usr/share/doc/fingerd-py/examples/"
                       "fingerd-sockets.conf /etc/systemd/system/fingerd.service.d/sockets.conf"
                       " && systemctl daemon-reload && systemctl start fingerd", timeout=60)
    assert guide.returncode == 0, guide.stderr
    assert ("finger on 0.0.0.0:79 (from systemd), [::]:79 (from systemd), "
            "setter on 127.0.0.1:1079 (from systemd)") in log()
    capabilities = int(process_status(system, main_pid())["CapBnd"], 16)
    assert capabilities == UNIT_CAPABILITIES & ~NET_BIND_SERVICE
    # Stopped, the service is started again by the next query.
    assert system.run("systemctl stop fingerd").returncode == 0
    assert active(system, "fingerd.service") == ["inactive"]
    # fingerd -t meanwhile: the addresses systemd holds are the start's, not another
    # program's, so the configuration is valid, as the start below shows.
    checked = system.run(f"fingerd -t -c {CONFIG}")
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stderr
    assert exchange(79, b"alice\r\n") == b"Run by systemd\r\n"
    assert active(system, "fingerd.service", *SOCKETS) == ["active"] * 4
    # A removal stops the sockets with the service: nothing is left listening.
    removed = system.run("dpkg --remove fingerd-py", timeout=300)
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
    assert "active" not in active(system, "fingerd.service", *SOCKETS)
    assert not can_connect(79) and not can_connect(1079) and not can_connect(9179)
    # Installed again, the sockets the operator enabled start before the service, which
    # serves on them with the statuses the removal kept.
    seen = len(log())
    again = system.run(f"dpkg -i {deb}", timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert active(system, "fingerd.service", *SOCKETS) == ["active"] * 4
    assert exchange(79, b"alice\r\n") == b"Run by systemd\r\n"
    assert "(from systemd)" in log()[seen:] and "startup failed" not in log()[seen:]
    # An upgrade restarts the service while systemd keeps the sockets: a client querying
    # all along, a query every few milliseconds, is answered every time.
    answers, done = [], threading.Event()

    def query_all_along():
        while not done.wait(QUERY_INTERVAL) and len(answers) < QUERIES_AT_MOST:
            try:
                answers.append((time.monotonic(), exchange(79, b"alice\r\n")))
            except OSError as exc:
                answers.append((time.monotonic(), exc))

    # This test has started the service more often in the last seconds than its start
    # limit allows (systemd's default, 5 in 10 s); an upgrade comes later than that.
    assert system.run("systemctl reset-failed fingerd.service").returncode == 0
    before = main_pid()
    client = threading.Thread(target=query_all_along)
    client.start()
    try:
        wait_until(lambda: answers, what="a first answer")
        began = time.monotonic()
        upgraded = system.run(f"dpkg -i {deb}", timeout=300)
        ended = time.monotonic()
        wait_until(lambda: answers[-1][0] > ended, what="an answer after the upgrade")
    finally:
        done.set()
        client.join(30)
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
    assert main_pid() != before
    within = [answer for at, answer in answers if began < at < ended]
    assert len(within) >= 10, f"{len(within)} queries during the upgrade"
    failed = [(round(at - began, 3), answer) for at, answer in answers
              if answer != b"Run by systemd\r\n"]
    assert not failed, (f"{len(failed)} of {len(answers)} queries failed, seconds after the "
                        f"upgrade began (it took {ended - began:.3f} s): {failed[:3]} ... "
                        f"{failed[-2:]}")
    # An upgrade with a configuration fingerd -t rejects is refused before systemd stops
    # anything: the daemon runs on, and dpkg --configure -a finishes the upgrade once the
    # file is fixed.
    before = main_pid()
    with rejected_configuration(system):
        refused = system.run(f"dpkg -i {deb}", timeout=300)
        assert refused.returncode != 0, refused.stdout[-3000:] + refused.stderr[-3000:]
        assert REFUSED in refused.stderr and REJECTED in refused.stderr, refused.stderr
        assert main_pid() == before and active(system, "fingerd.service") == ["active"]
    finished = system.run("dpkg --configure -a", timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert main_pid() != before and active(system, "fingerd.service") == ["active"]
