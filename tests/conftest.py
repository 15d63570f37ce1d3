"""Shared fixtures: a real fingerd process on free loopback ports, and clients."""

import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Chosen below the kernel's ephemeral range, so that no client connection
    made meanwhile can take it before the daemon binds it.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        first_ephemeral = int(f.read().split()[0])
    for _ in range(200):
        port = random.randrange(10000, min(first_ephemeral, 30000))
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def exchange(port, data, host="127.0.0.1", timeout=10.0, shut_write=False):
    """Send ``data`` on a new connection and return everything read until EOF."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
        raise AssertionError("server did not close the connection")


def can_connect(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


class Daemon:
    """A ``fingerd -n`` process with a configuration written for the test."""

    def __init__(self, directory, users=b"alice:Happy and well\nbob:Sleeping\n", **settings):
        self.dir = directory
        self.finger_port = free_port()
        self.setter_port = free_port()
        self.metrics_port = free_port()
        self.users_file = os.path.join(directory, "users")
        self.config_file = os.path.join(directory, "fingerd.conf")
        self.log_file = os.path.join(directory, "stderr.log")
        if users is not None:
            with open(self.users_file, "wb") as f:
                f.write(users)
        sections = {
            "fingerd": {"user": "nobody", "pidfile": os.path.join(directory, "fingerd.pid"),
                        "users_file": self.users_file, "reload_interval": "0.2",
                        "request_timeout": "3", "threads": "4"},
            "finger": {"listen": f"127.0.0.1:{self.finger_port}"},
            "setter": {"listen": f"127.0.0.1:{self.setter_port}"},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        }
        for key, value in settings.items():
            section, _, name = key.partition("__")
            sections[section][name] = value
        with open(self.config_file, "w") as f:
            for section, values in sections.items():
                f.write(f"[{section}]\n")
                f.writelines(f"{k} = {v}\n" for k, v in values.items())
        self.proc = None

    def start(self, wait=True, max_files=None):
        """Run fingerd -n; ``max_files`` lowers its RLIMIT_NOFILE."""
        self._stderr = open(self.log_file, "ab")
        limit = None
        if max_files is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fingerd", "-n", "-c", self.config_file],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            preexec_fn=limit)
        if wait:
            wait_until(lambda: self._alive() and self.ready(), what="fingerd to serve")
        return self

    def ready(self):
        """True once the metrics endpoint answers: probes by a scrape, which no counter sees."""
        try:
            return exchange(self.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n",
                            timeout=2).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def _alive(self):
        if self.proc.poll() is not None:
            pytest.fail(f"fingerd exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def log(self):
        with open(self.log_file, errors="replace") as f:
            return f.read()

    def finger(self, data, **kw):
        return exchange(self.finger_port, data, **kw)

    def setter(self, data, **kw):
        return exchange(self.setter_port, data, **kw)

    def metric(self, name, **labels):
        """The value of one sample on the metrics endpoint, or None."""
        text = exchange(self.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n").decode()
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                       if labels else "")
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample and not line.startswith("#") and _canonical(sample) == want:
                return float(value)
        return None

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=10):
        """TERM, then KILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._stderr.close()
        return self.proc.returncode


def _canonical(sample):
    name, brace, labels = sample.partition("{")
    if not brace:
        return name
    pairs = sorted(p for p in labels.rstrip("}").split(",") if p)
    return name + "{" + ",".join(pairs) + "}"


@pytest.fixture
def public_dir():
    """A temporary directory the unprivileged worker can read (pytest's own are 0700)."""
    path = tempfile.mkdtemp(prefix="fingerd-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_daemon(public_dir):
    """Build daemons in a readable temporary directory; every one started is stopped by its pid."""
    daemons = []

    def make(**kw):
        directory = os.path.join(public_dir, f"d{len(daemons)}")
        os.mkdir(directory, 0o755)
        daemon = Daemon(directory, **kw)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon().start()


def proc_status(pid):
    """``/proc/PID/status`` as a dict of field to value."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                status = proc_status(int(name))
            except OSError:
                continue
            if status.get("PPid") == str(pid) and status.get("State", "")[:1] != "Z":
                found.append(int(name))
    return found


def worker_of(daemon_pid, other_than=None):
    """The pid of the daemon's one worker, waiting until there is one (and not ``other_than``)."""
    def find():
        pids = [p for p in children(daemon_pid) if p != other_than]
        return pids[0] if len(pids) == 1 else None
    return wait_until(find, what="the worker process")


needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="privilege separation is only exercised as root")


def end_by_pidfile(path):
    """Stop a detached daemon a test started, by the pid in its pidfile."""
    from fingerd.process.pidfile import RUNNING, probe
    state, pid = probe(path)
    if state == RUNNING and pid:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: probe(path)[0] != RUNNING, timeout=20, what="the daemon to end")


def needs_tool(name, package):
    """Skip a test when the command ``name`` is missing, except in CI, where .ci/run
    installs it and its absence is a failure rather than a silent skip."""
    missing = shutil.which(name) is None and not os.environ.get("CI")
    return pytest.mark.skipif(missing, reason=f"{name} is not installed (Debian package "
                                              f"{package})")
