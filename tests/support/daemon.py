"""A real fingerd process for a test, and the end of a detached one."""

import functools
import os
import resource
import signal
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.net import exchange
from tests.support.polling import wait_until


def run_fingerd(*args, timeout=60, env=None):
    """``fingerd ARGS`` run to its end (a check, or a start that fails), its output as
    text; ``env`` adds to the environment it inherits (``run_first``)."""
    return subprocess.run([sys.executable, "-m", "fingerd", *args], cwd=ROOT, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=dict(os.environ, **env) if env else None)


class Daemon:
    """A ``fingerd -n`` process with a configuration written for the test.

    Its three services listen on ports taken from ``ports`` (a ``net.Ports``);
    ``settings`` are ``section__key=value`` lines for the configuration.
    """

    def __init__(self, directory, ports, users=b"alice:Happy and well\nbob:Sleeping\n",
                 **settings):
        self.dir = directory
        self.finger_port = ports.take()
        self.setter_port = ports.take()
        self.metrics_port = ports.take()
        self.users_file = os.path.join(directory, "users")
        self.config_file = os.path.join(directory, "fingerd.conf")
        self.log_file = os.path.join(directory, "stderr.log")
        if users is not None:
            with open(self.users_file, "wb") as f:
                f.write(users)
        self._sections = {
            "fingerd": {"user": "nobody", "pidfile": os.path.join(directory, "fingerd.pid"),
                        "users_file": self.users_file, "reload_interval": "0.2",
                        "request_timeout": "3", "threads": "4"},
            "finger": {"listen": f"127.0.0.1:{self.finger_port}"},
            "setter": {"listen": f"127.0.0.1:{self.setter_port}"},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        }
        for key, value in settings.items():
            section, _, name = key.partition("__")
            self._sections.setdefault(section, {})[name] = value
        self.pidfile = self._sections["fingerd"]["pidfile"]
        self._write_config()
        self.proc = None

    def _write_config(self):
        with open(self.config_file, "w") as f:
            for section, values in self._sections.items():
                f.write(f"[{section}]\n")
                f.writelines(f"{k} = {v}\n" for k, v in values.items())

    def reconfigure(self, **settings):
        """Rewrite the configuration with ``section__key=value`` changes (None removes
        the key), for a reload; the ports the helpers connect to are unchanged."""
        for key, value in settings.items():
            section, _, name = key.partition("__")
            if value is None:
                self._sections.get(section, {}).pop(name, None)
            else:
                self._sections.setdefault(section, {})[name] = value
        self._write_config()
        return self

    def listen(self, service, *addresses):
        """Before start: move ``service`` from its free port to ``addresses``, each
        ``HOST:PORT`` as the configuration writes it. ``finger``, ``setter``, ``web``
        and ``metric`` go on connecting to 127.0.0.1, at the first address's port."""
        self._sections.setdefault(service, {})["listen"] = ", ".join(addresses)
        setattr(self, f"{service}_port", int(addresses[0].rpartition(":")[2]))
        self._write_config()
        return self

    def start(self, wait=True, max_files=None, preexec=None, env=None, wrapper=(),
              stderr=None):
        """Run fingerd -n; ``max_files`` lowers its RLIMIT_NOFILE; ``preexec`` runs in
        the child before the exec; ``env`` adds to the environment it inherits;
        ``wrapper`` is a command that runs it (``systemd-socket-activate ... --``);
        ``stderr``, a descriptor, is its standard error instead of the log file (a
        pipe the test reads)."""
        self._stderr = open(self.log_file, "ab")
        steps = [preexec] if preexec is not None else []
        if max_files is not None:
            steps.append(functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE,
                                           (max_files, max_files)))
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "fingerd", "-n", "-c", self.config_file],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._stderr,
            stderr=self._stderr if stderr is None else stderr,
            env=dict(os.environ, **env) if env else None,
            preexec_fn=(lambda: [step() for step in steps]) if steps else None)
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

    def web(self, data, **kw):
        """The raw reply of the web directory (``listen("web", ...)``) to ``data``."""
        return exchange(self.web_port, data, **kw)

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

    def ctl(self, *args, stdout=subprocess.PIPE):
        """``fingerd-ctl ARGS`` for this daemon's configuration, run to its end; its
        standard output captured, or where ``stdout`` (a file) says."""
        return subprocess.run([sys.executable, "-m", "fingerd.ctl", "-c", self.config_file,
                               *args], cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
                              stdout=stdout, stderr=subprocess.PIPE, text=True)

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


class Daemons:
    """The daemons a fixture makes, each in a directory of its own in ``directory`` (one
    the unprivileged worker can read), on ports from ``ports``; called with a ``Daemon``'s
    keywords, makes one."""

    def __init__(self, directory, ports):
        self._directory = directory
        self._ports = ports
        self._made = []

    def __call__(self, **kw):
        directory = os.path.join(self._directory, f"d{len(self._made)}")
        os.mkdir(directory, 0o755)
        daemon = Daemon(directory, self._ports, **kw)
        self._made.append(daemon)
        return daemon

    def end(self):
        """Stop every one by its pid; then the first traceback one logged, with what came
        just before it, or None. A traceback is a failure the daemon did not expect, which
        its clients may never have seen."""
        for daemon in self._made:
            daemon.stop()
        for daemon in self._made:
            if os.path.exists(daemon.log_file):
                log = daemon.log()
                if "Traceback" in log:
                    return log[max(0, log.index("Traceback") - 200):][:3000]
        return None


def run_first(directory, code):
    """``env`` for ``Daemon.start`` under which fingerd's interpreter runs ``code`` before
    it imports anything of fingerd's (a sitecustomize module, written in ``directory``):
    a bound lowered, or a failure made, in a real daemon."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sitecustomize.py"), "w") as f:
        f.write(code)
    return {"PYTHONPATH": os.pathsep.join([directory, ROOT])}


#: Run first by a daemon (``held_until``): the call ``HELD_CALL`` names waits for the file
#: ``HELD_UNTIL`` names, 30 s at most, before it runs.
_HELD = """\
import functools, importlib, os, time
path, _, name = os.environ["HELD_CALL"].rpartition(".")
module, _, cls = path.partition(":")
owner = importlib.import_module(module)
if cls:
    owner = getattr(owner, cls)
called, marker = getattr(owner, name), os.environ["HELD_UNTIL"]
@functools.wraps(called)
def held(*args, **kwargs):
    deadline = time.monotonic() + 30
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    return called(*args, **kwargs)
setattr(owner, name, held)
"""


def held_until(directory, call, marker):
    """``env`` for ``Daemon.start`` under which fingerd's ``call`` (``module.function`` or
    ``module:Class.method``) waits until the file ``marker`` exists (30 s at most): a
    daemon held at one step of its start or of a reload while a test acts. The code is
    written in ``directory`` (``run_first``)."""
    return {**run_first(directory, _HELD), "HELD_CALL": call, "HELD_UNTIL": marker}


def _canonical(sample):
    name, brace, labels = sample.partition("{")
    if not brace:
        return name
    pairs = sorted(p for p in labels.rstrip("}").split(",") if p)
    return name + "{" + ",".join(pairs) + "}"


def end_by_pidfile(path):
    """Stop a detached daemon a test started, by the pid in its pidfile."""
    from fingerd.process.pidfile import RUNNING, probe
    state, pid = probe(path)
    if state == RUNNING and pid:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: probe(path)[0] != RUNNING, timeout=20, what="the daemon to end")
