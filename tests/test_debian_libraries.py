"""fingerd on the libraries Debian ships (Debian 12: python3-daemon 2.3.2,
python3-prometheus-client 0.16.0), which its Debian package depends on: the daemon tests
run again in a virtual environment of Debian's own Python that sees Debian's packages and
nothing from PyPI."""

import configparser
import os
import re
import subprocess

import pytest

from tests.support import ROOT
from tests.support.environments import own_loopback

DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_SITE = "/usr/lib/python3/dist-packages"
#: The Debian packages the virtual environment imports, by module.
DEBIAN_MODULES = {"daemon": "python3-daemon", "prometheus_client": "python3-prometheus-client",
                  "pytest": "python3-pytest"}
#: Tests that start the daemon detached and in the foreground and scrape its metrics.
DAEMON_TESTS = ("tests/test_metrics.py", "tests/test_lifecycle.py", "tests/test_ctl.py")

_missing = [package for module, package in DEBIAN_MODULES.items()
            if not os.path.isdir(os.path.join(DEBIAN_SITE, module))]
pytestmark = pytest.mark.skipif(
    bool(_missing) and not os.environ.get("CI"),
    reason=f"Debian packages not installed: {' '.join(_missing)}")


@pytest.fixture(scope="module")
def debian_venv(tmp_path_factory):
    return made_venv(tmp_path_factory)


def made_venv(tmp_path_factory):
    """``python`` of a venv made by Debian's python3 with ``--system-site-packages``."""
    path = tmp_path_factory.mktemp("debian-venv")
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", str(path)],
                   check=True, capture_output=True, timeout=120)
    return os.path.join(path, "bin", "python")


def run(python, *args, timeout=60, wrapped=list):
    """``python ARGS`` in the tree, without the caller's PYTHON* variables; ``wrapped``
    makes the command line what runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(wrapped([python, *args]), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_venv_imports_debians_packages_and_the_tree(debian_venv):
    script = ("import importlib, importlib.metadata as m, os, fingerd\n"
              f"for name in {sorted(DEBIAN_MODULES)!r}:\n"
              "    print(name, os.path.dirname(importlib.import_module(name).__file__))\n"
              "print('fingerd', os.path.dirname(os.path.dirname(fingerd.__file__)))\n"
              "print('versions', m.version('python-daemon'), m.version('prometheus_client'))\n")
    result = run(debian_venv, "-c", script)
    assert result.returncode == 0, result.stderr
    where = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for module in DEBIAN_MODULES:
        assert where[module] == os.path.join(DEBIAN_SITE, module)
    assert where["fingerd"] == ROOT
    tested = dict(zip(("python-daemon", "prometheus-client"), where["versions"].split()))
    minimums = declared_minimums()
    assert all(release(tested[name]) >= release(least) for name, least in minimums.items())
    if debian_major() == 12:
        # setup.cfg's minimums are Debian 12's versions, older than the ones PyPI serves.
        assert minimums == tested
        assert release(tested["python-daemon"]) < (3,)
        assert release(tested["prometheus-client"]) < (0, 18)


def release(version):
    """``0.16.0`` as ``(0, 16, 0)``: the numbers a version starts with."""
    return tuple(map(int, re.match(r"\d+(?:\.\d+)*", version).group().split(".")))


def debian_major():
    """The Debian release this machine runs (12, 13), or None."""
    try:
        with open("/etc/debian_version") as f:
            return int(f.read().split(".")[0])
    except (OSError, ValueError):
        return None


def declared_minimums():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    requirements = setup["options"]["install_requires"].split("\n")
    return dict(r.replace(" ", "").split(">=") for r in requirements if ">=" in r)


def run_daemon_tests(tmp_path_factory):
    """DAEMON_TESTS run in a venv of their own on a loopback of their own: their outcome."""
    return run(made_venv(tmp_path_factory), "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *DAEMON_TESTS, timeout=600, wrapped=own_loopback)


def test_the_daemon_tests_pass_on_debians_libraries(environment_runs):
    result = environment_runs.result(__name__)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
