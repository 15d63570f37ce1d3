"""A Debian tree booted with systemd as its PID 1: the package as most Debian hosts run it,
systemd starting, reloading and stopping fingerd.service and holding its sockets.

systemd runs in new PID, mount, UTS, IPC and cgroup namespaces, in a cgroup made for
the boot, and shares the host's network, so that the tests reach its services on
loopback. Ending it kills every process of its PID namespace; its mounts go with the
namespace, and its cgroups are removed.
"""

import os
import shlex
import shutil
import signal
import subprocess

import pytest

from tests.support.chroot import ENV
from tests.support.polling import wait_until

#: Mounts what systemd needs in the tree $1 (its own /proc, /sys, cgroup2 and a /dev of
#: a few devices) and makes systemd the PID 1 of the new namespaces there.
BOOT = """set -e
d=$1
mount --make-rprivate /
mount --bind "$d" "$d"
mount -t proc proc "$d/proc"
mount -t sysfs sysfs "$d/sys"
mount -t cgroup2 cgroup2 "$d/sys/fs/cgroup"
mount -t tmpfs -o mode=755 tmpfs "$d/dev"
for node in null zero full random urandom tty; do
    touch "$d/dev/$node"
    mount --bind "/dev/$node" "$d/dev/$node"
done
mkdir "$d/dev/pts" "$d/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$d/dev/pts"
ln -s pts/ptmx "$d/dev/ptmx"
mount -t tmpfs tmpfs "$d/dev/shm"
exec chroot "$d" /usr/bin/env -i container=fingerd-tests /lib/systemd/systemd --system
"""
#: Seconds systemd may take to finish booting, and to go once killed.
BOOT_TIMEOUT = 60
END_TIMEOUT = 20


def cgroup2_root(mounts="/proc/self/mounts"):
    """Where this machine mounts the cgroup2 hierarchy, or None."""
    with open(mounts) as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


class Booted:
    """systemd booted in the Debian tree at ``path`` (with systemd installed), as a
    context manager: ``run`` runs a shell script inside."""

    def __init__(self, path, log):
        self.path = path
        self.log = log
        self.cgroup = None
        self.unshare = None
        self.pid = None

    def __enter__(self):
        root = cgroup2_root()
        if root is None:
            pytest.skip("this machine mounts no cgroup2 hierarchy for systemd to run in")
        # The journal in memory only: a kept tree booted at every run would gather one.
        journald = os.path.join(self.path, "etc/systemd/journald.conf.d")
        os.makedirs(journald, exist_ok=True)
        with open(os.path.join(journald, "fingerd-tests.conf"), "w") as f:
            f.write("[Journal]\nStorage=volatile\n")
        shutil.rmtree(os.path.join(self.path, "var/log/journal"), ignore_errors=True)
        self.cgroup = os.path.join(root, f"fingerd-tests-{os.getpid()}")
        os.mkdir(self.cgroup)
        procs = os.path.join(self.cgroup, "cgroup.procs")

        def enter_cgroup():
            with open(procs, "w") as f:
                f.write("0")

        try:
            with open(self.log, "wb") as out:
                self.unshare = subprocess.Popen(
                    ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts",
                     "--ipc", "--cgroup", "sh", "-c", BOOT, "boot", self.path],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=enter_cgroup)
            self.pid = wait_until(self._init_pid, what="systemd's start")
            wait_until(self._booted, timeout=BOOT_TIMEOUT, interval=0.2,
                       what="systemd to finish booting")
        except BaseException:
            self._end()
            raise
        return self

    def __exit__(self, *exc):
        self._end()

    def _init_pid(self):
        """The host's pid of systemd, once unshare's child runs it."""
        try:
            with open(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children") as f:
                children = f.read().split()
            if children:
                with open(f"/proc/{children[0]}/comm") as f:
                    if f.read().strip() == "systemd":
                        return int(children[0])
        except OSError:
            pass
        if self.unshare.poll() is not None:
            with open(self.log, errors="replace") as f:
                raise AssertionError(f"the boot failed: {f.read()[-3000:]}")
        return None

    def _booted(self):
        state = self.run("systemctl is-system-running").stdout.strip()
        # degraded: a unit that needs what a container lacks (kernel modules) failed.
        return state in ("running", "degraded")

    def run(self, script, timeout=120):
        """Run the shell ``script`` inside, as root, in all of systemd's namespaces."""
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in ENV.items())
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "-r", "-w", "sh", "-c",
             f"exec env -i {env} sh -c \"$0\"", script],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def _end(self):
        """Kill systemd and with it its namespace, and remove its cgroups."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.unshare is not None:
            if self.pid is None:
                # --kill-child: systemd goes with unshare, even before its pid is known.
                self.unshare.kill()
            # unshare reaps systemd, then exits.
            self.unshare.wait(END_TIMEOUT)
        if self.cgroup is not None:
            wait_until(self._remove_cgroups, timeout=END_TIMEOUT,
                       what="the booted system's cgroups to empty")

    def _remove_cgroups(self):
        """Remove the boot's cgroup and those systemd made in it, deepest first."""
        for top in sorted((walked[0] for walked in os.walk(self.cgroup)), key=len,
                          reverse=True):
            try:
                os.rmdir(top)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return not os.path.exists(self.cgroup)
