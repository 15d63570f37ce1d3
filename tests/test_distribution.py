"""What pip users get (docs/guide.md, "Installing"): an sdist with the operator's files
and the tests, a LICENSE, and the virtual environment path with the init script."""

import configparser
import os
import subprocess
import sys
import tarfile

import pytest

from tests.support import ROOT
from tests.support.daemon import end_by_pidfile
from tests.support.source_tree import copy_source

#: Files an operator installs beside the package, and what runs the tests.
SDIST_CARRIES = ("LICENSE", "README.md", "pyproject.toml", "setup.cfg", "setup.py",
                 "init/fingerd", "init/fingerd.service", "init/fingerd.default",
                 "init/fingerd.conf", "init/users", "docs/fingerd.8", "docs/fingerd-ctl.8",
                 "docs/fingerd.conf.5", "docs/alerts.yml", "docs/grafana-dashboard.json",
                 "docs/guide.md", "docs/hosts.md", "docs/speed.md", "docs/fuzzing.md",
                 "docs/design.md", "docs/web.png",
                 "tests/conftest.py", "tests/support/daemon.py", "fingerd/cli.py")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist the pyproject.toml backend builds from a copy of the tree, offline."""
    tree = copy_source(tmp_path_factory.mktemp("sdist") / "tree")
    out = tree.parent / "dist"
    result = subprocess.run(
        [sys.executable, "-c", "import sys, setuptools.build_meta as backend\n"
         "print(backend.build_sdist(sys.argv[1]))", str(out)],
        cwd=tree, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out / result.stdout.split()[-1]


def test_pyproject_names_the_setuptools_backend_and_setup_cfg_keeps_the_metadata():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert 'build-backend = "setuptools.build_meta"' in text
    assert "[project]" not in text
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    assert setup["metadata"]["name"] == "fingerd"


def test_the_license_file_is_the_mit_license_setup_cfg_names():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    assert setup["metadata"]["license"] == "MIT"
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.readline().strip() == "MIT License"
        assert "Permission is hereby granted, free of charge" in f.read()


def test_the_sdist_carries_init_docs_and_tests(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [name for name in SDIST_CARRIES if name not in names]
    assert not missing
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_readme_venv_path_serves_through_the_init_script(sdist, make_daemon, public_dir):
    """docs/guide.md's steps with the sdist: a venv in /opt/fingerd's place, FINGERD= and
    FINGERD_CTL= set in the defaults file as the guide's sed sets them, the init script."""
    venv = os.path.join(public_dir, "opt-fingerd")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv],
                   check=True, timeout=120)
    # Offline: the build backend and the dependencies come from Debian's packages.
    pip = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--no-index",
                          "--no-build-isolation", str(sdist)],
                         capture_output=True, text=True, timeout=300, cwd=public_dir)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    defaults = os.path.join(public_dir, "default-fingerd")
    with open(os.path.join(ROOT, "init", "fingerd.default")) as f:
        text = f.read()
    with open(defaults, "w") as f:
        f.write(text.replace("#FINGERD=/usr/local/bin/fingerd",
                             f"FINGERD={venv}/bin/fingerd").replace(
            "#FINGERD_CTL=/usr/local/bin/fingerd-ctl", f"FINGERD_CTL={venv}/bin/fingerd-ctl"))
    d = make_daemon(fingerd__log_file=os.path.join(public_dir, "fingerd.log"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONFIG": d.config_file,
           "FINGERD_DEFAULTS": defaults}

    def action(name):
        return subprocess.run([os.path.join(ROOT, "init", "fingerd"), name], env=env,
                              capture_output=True, text=True, timeout=60, cwd="/",
                              stdin=subprocess.DEVNULL)

    try:
        start = action("start")
        assert start.returncode == 0, start.stdout + start.stderr
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        with open(d.pidfile) as f:
            pid = f.read().strip()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f"{venv}/bin/fingerd".encode() in f.read()
        assert action("stop").returncode == 0
        assert action("status").returncode == 3
    finally:
        end_by_pidfile(d.pidfile)
