"""Values the system calls cannot take are refused by the check, named by file, line and
key, never met as a traceback."""

import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.daemon import Daemon, run_fingerd

#: EX_CONFIG, the exit status of a start that failed on its configuration.
MISCONFIGURED = 78


@pytest.fixture
def setup(public_dir, ports):
    return Daemon(public_dir, ports)


def with_nul(daemon, *keys):
    """Set each [fingerd] ``key`` to a path holding a NUL byte; the line of the last."""
    daemon.reconfigure(**{f"fingerd__{key}": "/tmp/a\0b" for key in keys})
    with open(daemon.config_file) as f:
        return next(number for number, line in enumerate(f, 1)
                    if line.startswith(f"{keys[-1]} ="))


@pytest.mark.parametrize("key", ("users_file", "pidfile", "log_file"))
def test_a_nul_byte_in_a_path_is_an_error_of_its_line(setup, key):
    """It raised ValueError (embedded null byte) out of os.stat: a traceback, exit 1."""
    line = with_nul(setup, key)
    result = run_fingerd("-t", "-c", setup.config_file)
    assert (result.returncode, result.stderr) == (
        1, f"{setup.config_file}:{line}: [fingerd] {key}: a NUL byte in the value\n")


def test_a_failed_start_and_fingerd_ctl_pass_over_a_nul_byte_in_a_path(setup):
    """The failed start looks for log_file, fingerd-ctl for the pidfile, in a
    configuration that does not load: each raised ValueError there."""
    with_nul(setup, "log_file", "pidfile")
    start = run_fingerd("-n", "-c", setup.config_file)
    assert start.returncode == MISCONFIGURED, start.stderr
    assert "Traceback" not in start.stderr and "a NUL byte in the value" in start.stderr
    status = subprocess.run([sys.executable, "-m", "fingerd.ctl", "-c", setup.config_file,
                             "status"], cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    assert status.returncode == 3 and "Traceback" not in status.stderr, status.stderr


def test_group_root_is_refused_as_user_root_is(setup):
    """``user = root`` was refused, ``group = root`` taken: the worker ran with gid 0,
    opening whatever root's group may (a file of mode 0640 or 0660, root's by group)."""
    setup.reconfigure(fingerd__group="root")
    with open(setup.config_file) as f:
        line = next(number for number, text in enumerate(f, 1) if text.startswith("group ="))
    for option, status in (("-t", 1), ("-n", MISCONFIGURED)):
        result = run_fingerd(option, "-c", setup.config_file)
        assert (result.returncode, result.stderr) == (status, (
            f"{setup.config_file}:{line}: [fingerd] group: 'root' is gid 0 (root); the worker "
            f"must run unprivileged: name a group of its own in [fingerd] group\n"))


def test_a_wildcard_and_another_address_of_its_port_in_one_list_are_refused(setup):
    """The check said the configuration was valid, and the start then failed on its own
    second bind: 'cannot listen on 127.0.0.1:P ([finger] listen): address already in
    use', as if another program held the port."""
    port = setup.finger_port
    setup.listen("finger", f"0.0.0.0:{port}", f"127.0.0.1:{port}")
    with open(setup.config_file) as f:
        line = next(number for number, text in enumerate(f, 1)
                    if text.startswith("listen = 0.0.0.0:"))
    for option, status in (("-t", 1), ("-n", MISCONFIGURED)):
        result = run_fingerd(option, "-c", setup.config_file)
        assert (result.returncode, result.stderr) == (status, (
            f"{setup.config_file}:{line}: [finger] listen: 127.0.0.1:{port} is also "
            f"[finger]'s 0.0.0.0:{port}\n"))


def test_max_uid_below_min_uid_is_refused(setup):
    """Taken without a word: with system_users no account was ever shown."""
    setup.reconfigure(finger__min_uid="2000", finger__max_uid="1000")
    with open(setup.config_file) as f:
        line = next(number for number, text in enumerate(f, 1) if text.startswith("max_uid"))
    result = run_fingerd("-t", "-c", setup.config_file)
    assert (result.returncode, result.stderr) == (1, (
        f"{setup.config_file}:{line}: [finger] max_uid: max_uid 1000 is below min_uid 2000: "
        f"no account would be shown\n"))


def test_a_key_indented_under_a_path_is_refused_not_taken_into_the_path(setup):
    """The path took the indented line in: 'users_file = users' then '  threads = 4'
    named a users file 'users\\nthreads = 4', which the check called valid and the
    start served as missing, with no users, and fingerd -T wrote back as two keys.
    A list still goes on over indented lines."""
    setup.reconfigure(fingerd__users_file=f"{setup.users_file}\n  threads = 4",
                      finger__allow_from="127.0.0.0/8,\n  ::1")
    with open(setup.config_file) as f:
        line = next(number for number, text in enumerate(f, 1)
                    if text.startswith("users_file ="))
    result = run_fingerd("-t", "-c", setup.config_file)
    assert (result.returncode, result.stderr) == (1, (
        f"{setup.config_file}:{line}: [fingerd] users_file: the indented line 'threads = 4' "
        f"after it goes on with its value; a key of its own is not indented\n"))
    setup.reconfigure(fingerd__users_file=setup.users_file)
    result = run_fingerd("-T", "-c", setup.config_file)
    assert result.returncode == 0, result.stderr
    assert "\nallow_from = 127.0.0.0/8, ::1\n" in result.stdout
