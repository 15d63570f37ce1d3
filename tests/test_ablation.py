"""scripts/ablation_launcher.py: every patch still finds what it turns off in fingerd,
and the daemon it launches still answers, so that a rename in fingerd breaks this
test rather than letting scripts/bench_ablation.py measure fingerd unchanged."""

import json
import os
import runpy
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.daemon import Daemon
from tests.support.polling import wait_until

LAUNCHER = os.path.join(ROOT, "scripts", "ablation_launcher.py")
launcher = runpy.run_path(LAUNCHER)


class LaunchedDaemon(Daemon):
    """A Daemon run by the launcher with ``mechanism`` turned off."""

    def __init__(self, mechanism, directory, ports):
        super().__init__(directory, ports, setter__rate_limit="0")
        self.mechanism = mechanism

    def start(self):
        self._stderr = open(self.log_file, "ab")  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen(
            [sys.executable, LAUNCHER, self.mechanism, "--", "-n", "-c", self.config_file],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr)
        wait_until(lambda: self._alive() and self.ready(), what="fingerd to serve")
        return self


def test_every_patch_finds_its_target():
    checked = subprocess.run([sys.executable, LAUNCHER, "--check"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr


def test_a_missing_target_is_an_error():
    with pytest.raises(AttributeError, match="no such_name"):
        launcher["_replace"](subprocess, "such_name", 1)


def test_an_unknown_mechanism_is_refused():
    refused = subprocess.run([sys.executable, LAUNCHER, "no-such-mechanism", "--", "-t"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "answer-cache" in refused.stderr


def web_status(daemon):
    """The status the web directory's JSON shows for alice."""
    reply = daemon.web(b"GET /api/users/alice HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:200]
    return json.loads(reply.partition(b"\r\n\r\n")[2])["answer"].rpartition("Status: ")[2]


@pytest.mark.parametrize("mechanism", [launcher["ALL_ON"], *launcher["PATCHES"]])
def test_the_daemon_answers_with_a_mechanism_off(mechanism, public_dir, ports):
    """A query and a web request, a set, and both again, which show the set."""
    daemon = LaunchedDaemon(mechanism, public_dir, ports).listen("web",
                                                                 f"127.0.0.1:{ports.take()}")
    try:
        daemon.start()
        assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert web_status(daemon) == "Happy and well"
        assert daemon.setter(b"alice\r\nSet with " + mechanism.encode() + b" off\r\n") == \
            b"OK\r\n"
        wait_until(lambda: daemon.finger(b"alice\r\n") ==
                   b"Set with " + mechanism.encode() + b" off\r\n", what="the new status")
        assert web_status(daemon) == f"Set with {mechanism} off"
    finally:
        daemon.stop()
