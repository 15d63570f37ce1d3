"""A Debian chroot made with debootstrap, for running fingerd on another Debian release.

The chroot is made once and kept under CACHE, named for its release and its
package list, so that a later run reuses it; one whose making did not finish
is made again. Commands run inside it in a private mount namespace of their
own, with /proc and /dev mounted there: nothing is left mounted on the host,
whatever happens to the command.
"""

import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess

from tests.support import ROOT

#: Where chroots are kept between runs.
CACHE = "/var/cache/fingerd-tests"
#: The environment of every command run inside: the chroot's own tools only.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
       "DEBIAN_FRONTEND": "noninteractive", "PYTHONDONTWRITEBYTECODE": "1"}
#: Seconds debootstrap may take: it downloads a few hundred MB.
MAKE_TIMEOUT = 900


def configured_mirror(sources=("/etc/apt/sources.list.d/*.sources", "/etc/apt/sources.list")):
    """The Debian archive this machine's apt is set up with (not its security archive),
    or None when it names none: debootstrap then uses its own default."""
    for pattern in sources:
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                text = f.read()
            for line in text.splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and len(words) > 1:
                    uri = words[1]
                elif words[:1] == ["deb"] and len(words) > 2:
                    uri = next(w for w in words[1:] if not w.startswith("["))
                else:
                    continue
                if "security" not in uri:
                    return uri
    return None


class Chroot:
    """A chroot of Debian ``release`` with ``packages`` installed (debootstrap minbase)."""

    def __init__(self, release, packages, cache=CACHE):
        self.release = release
        self.packages = tuple(sorted(packages))
        digest = hashlib.sha256(" ".join(self.packages).encode()).hexdigest()[:12]
        self.path = os.path.join(cache, f"{release}-{digest}")
        self._done = os.path.join(self.path, ".made-by-fingerd-tests")

    def make(self):
        """Make the chroot unless a complete one is there; returns self."""
        if os.path.exists(self._done):
            return self
        partial = self.path + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(os.path.dirname(partial), exist_ok=True)
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(self.packages)}",
                self.release, partial]
        mirror = configured_mirror()
        if mirror:
            argv.append(mirror)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=MAKE_TIMEOUT,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise AssertionError(f"debootstrap {self.release} failed:\n"
                                 f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        shutil.rmtree(self.path, ignore_errors=True)
        os.rename(partial, self.path)
        with open(self._done, "w") as f:
            f.write(" ".join(self.packages) + "\n")
        return self

    def host_path(self, inside):
        """Where the chroot's path ``inside`` is on the host."""
        return os.path.join(self.path, inside.lstrip("/"))

    def copy_checkout(self, inside):
        """The checkout's tracked files, as they are in the working tree, at ``inside``."""
        destination = self.host_path(inside)
        shutil.rmtree(destination, ignore_errors=True)
        os.makedirs(destination)
        files = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True,
                               check=True).stdout.decode().split("\0")
        for name in filter(None, files):
            source = os.path.join(ROOT, name)
            if os.path.lexists(source):
                os.makedirs(os.path.dirname(os.path.join(destination, name)), exist_ok=True)
                shutil.copy2(source, os.path.join(destination, name), follow_symlinks=False)
        return inside

    def run(self, script, timeout=120, env=None, own_loopback=False):
        """Run the shell ``script`` inside, with /proc and /dev mounted for it alone; with
        ``own_loopback``, in a network namespace of its own whose only interface is its
        loopback (tests then bind what ports they like, and reach nothing outside)."""
        namespaces = ["--mount", "--net"] if own_loopback else ["--mount"]
        setup = (("ip link set lo up && " if own_loopback else "")
                 + f'mount -t proc proc "{self.path}/proc" && '
                 f'mount --rbind /dev "{self.path}/dev" && '
                 f'exec chroot "{self.path}" env -i '
                 + " ".join(shlex.quote(f"{k}={v}") for k, v in {**ENV, **(env or {})}.items())
                 + ' sh -c "$0"')
        return subprocess.run(["unshare", *namespaces, "--propagation", "private", "sh", "-c",
                               setup, script], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def assert_pytest_passed(result):
    """``result``, of pytest run inside, exited 0, and its summary line counts tests passed
    and none failed."""
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed", summary) and "failed" not in summary, summary


def purge(run, package):
    """Purge ``package`` with ``run`` (a chroot's or a booted system's ``run``), and say
    what went wrong if dpkg still knows it after, else None: the tree is kept between
    runs, and a package left there would make the next run's install an upgrade."""
    result = run(f"dpkg --purge {package} && ! dpkg-query -W {package}", timeout=300)
    if result.returncode == 0:
        return None
    return (f"{package} is still known to dpkg after a purge:\n"
            + result.stdout[-3000:] + result.stderr[-3000:])
