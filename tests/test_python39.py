"""fingerd on the oldest Python it claims (setup.cfg: ``python_requires = >=3.9``):
Debian 11's Python 3.9, in a chroot made with debootstrap, installs the checkout with
pip, with what PyPI serves for that Python (python-daemon, prometheus-client, pytest,
Hypothesis), and runs the daemon's tests and the tests of its pure modules."""

import os
import shutil

from tests.support.chroot import Chroot, assert_pytest_passed
from tests.support.markers import needs_root, needs_tool

RELEASE = "bullseye"
PACKAGES = ("python3", "python3-venv", "adduser", "sysvinit-utils", "procps",
            "ca-certificates")
#: The daemon started detached and in the foreground, answering, setting, reloading and
#: scraped, as a privilege-separated root parent and worker; and the pure modules'
#: tests and properties.
TESTS = ("tests/test_lifecycle.py", "tests/test_ctl.py", "tests/test_metrics.py",
         "tests/test_finger_service.py", "tests/test_setter_service.py",
         "tests/test_privsep.py", "tests/test_reload.py", "tests/test_invisible_characters.py",
         "tests/test_query.py", "tests/test_lines.py", "tests/test_http_head.py",
         "tests/test_metrics_http.py", "tests/test_proxy_header.py", "tests/test_usersfile.py",
         "tests/test_setter_request.py", "tests/test_config.py", "tests/test_peer_owner.py",
         "tests/test_channel.py", "tests/test_output.py", "tests/test_logrelay.py",
         "tests/test_utmp.py", "tests/test_lastlog.py", "tests/test_editing.py",
         "tests/test_table.py", "tests/test_token_bucket.py", "tests/test_gate.py")
#: This machine's certificate authorities, for the chroot's pip: a proxy on the way to
#: PyPI may sign with one of its own.
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
CA = "/etc/fingerd-tests-ca.crt"

pytestmark = [needs_root, needs_tool("debootstrap", "debootstrap"), needs_tool("git", "git")]


def run_daemon_tests(tmp_path_factory):
    """The checkout installed with pip in a new venv of bullseye's Python 3.9, and TESTS
    run there on a loopback of their own: the install's, the version's and the tests'
    outcomes (the last two None when the install failed)."""
    bullseye = Chroot(RELEASE, PACKAGES).make()
    tree = bullseye.copy_checkout("/src")
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    if os.path.exists(HOST_CA):
        shutil.copy(HOST_CA, bullseye.host_path(CA))
        env["PIP_CERT"] = CA
    installed = bullseye.run(f"rm -rf /venv && python3 -m venv /venv && "
                             f"/venv/bin/pip install -q --upgrade pip && "
                             f"/venv/bin/pip install -q '{tree}[test]'", timeout=600, env=env)
    if installed.returncode != 0:
        return installed, None, None
    version = bullseye.run("/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    result = bullseye.run(f"cd {tree} && /venv/bin/python -m pytest -q -p no:cacheprovider "
                          f"{' '.join(TESTS)}", timeout=900, own_loopback=True)
    return installed, version, result


def test_python_3_9_installs_fingerd_and_passes_its_daemon_and_pure_module_tests(
        environment_runs):
    installed, version, result = environment_runs.result(__name__)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert version.stdout.strip() == "(3, 9)", version.stdout + version.stderr
    assert_pytest_passed(result)
