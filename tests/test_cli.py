"""The fingerd command line: checking, and failing fast before binding."""

import dataclasses
import os
import pathlib
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from fingerd.cli import parse_args
from fingerd.config import load_config, parse_config
from fingerd.process.pidfile import read_pid
from tests.support import ROOT
from tests.support.accounts import NOBODY
from tests.support.children import main_as_nobody
from tests.support.daemon import Daemon, end_by_pidfile, run_fingerd, run_first
from tests.support.markers import needs_ipv6


@pytest.fixture
def setup(public_dir, ports):
    """A configuration in a directory the worker's account can read, as a start asks."""
    return Daemon(public_dir, ports)


#: The exit status of a start that failed on what no retry mends (EX_CONFIG), which
#: fingerd.service does not restart; -t and -T say 1, and a start that failed otherwise.
MISCONFIGURED = 78


def refusal(*args, status=1):
    """What ``fingerd ARGS`` printed on standard error, once it exited ``status``."""
    result = run_fingerd(*args)
    assert result.returncode == status, result.stderr
    return result.stderr


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def test_version():
    result = run_fingerd("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("fingerd ")


def test_check_valid_configuration(setup):
    result = run_fingerd("-t", "-c", setup.config_file)
    assert result.returncode == 0, result.stderr
    assert "configuration valid" in result.stdout
    assert "2 users" in result.stdout


def made_in(public_dir, case):
    """A place for a file the start makes, as ``case`` names it: its path, and what the
    start says of it."""
    if case == "missing directory":
        return os.path.join(public_dir, "no-such-directory", "f"), "No such file or directory"
    if case == "a directory":
        return public_dir, "Is a directory"
    if case == "a file in the way":
        in_the_way = os.path.join(public_dir, "plain")
        open(in_the_way, "w").close()
        return os.path.join(in_the_way, "f"), f"{in_the_way} is not a directory"
    if case == "a directory others may write":
        shared = os.path.join(public_dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        return os.path.join(shared, "f"), (f"directory {shared} is writable by group and "
                                           f"others; run chmod go-w {shared}")
    linked = os.path.join(public_dir, "linked")
    os.symlink(public_dir, linked)
    return os.path.join(linked, "f"), (f"directory {linked} is a symbolic link, which fingerd "
                                       f"does not follow; name the real directory in "
                                       f"[setter] socket")


@pytest.mark.parametrize("section, key, case", [
    ("fingerd", "pidfile", "missing directory"), ("fingerd", "pidfile", "a directory"),
    ("fingerd", "log_file", "missing directory"), ("fingerd", "log_file", "a directory"),
    ("setter", "socket", "a file in the way"), ("setter", "socket", "a directory others may write"),
    ("setter", "socket", "a symbolic link"),
])
def test_check_refuses_a_file_the_start_could_not_make_as_the_start_does(setup, public_dir,
                                                                        section, key, case):
    """-t, -T and the start (which reports it once it has bound) say alike what is wrong,
    and the check makes nothing. The start exits 78 on the setter's socket's path, which
    no retry mends until the operator acts (fingerd.service does not restart it), 1 on
    a pidfile or log file it cannot write, as fingerd(8) says."""
    path, reason = made_in(public_dir, case)
    setup.reconfigure(**{f"{section}__{key}": path})
    before = sorted(os.listdir(public_dir))
    checked = [refusal(option, "-c", setup.config_file) for option in ("-t", "-T")]
    assert checked[0] == checked[1] and checked[0].count("\n") == 1, checked
    assert sorted(os.listdir(public_dir)) == before
    started = refusal("-n", "-c", setup.config_file,
                      status=MISCONFIGURED if section == "setter" else 1)
    said = checked[0].partition(f"[{section}] {key}: {path}: ")[2].strip()
    assert said and said.partition(": ")[2] in started, (said, started)
    assert said.endswith(reason), said


def test_check_refuses_a_directory_in_the_way_of_the_pidfile_s_lock_as_the_start_does(setup):
    """The lock file is opened where it is: a directory there failed the start (exit 1)
    while -t said the configuration valid."""
    lock = setup.pidfile + ".lock"
    os.mkdir(lock)
    checked = refusal("-t", "-c", setup.config_file)
    assert checked.endswith(f": [fingerd] pidfile: {setup.pidfile}: cannot take the pidfile: "
                            f"{lock}: Is a directory\n") and checked.count("\n") == 1, checked
    started = refusal("-n", "-c", setup.config_file)
    assert f"cannot take the pidfile ({lock}): Is a directory" in started, started


def test_check_waits_on_no_fifo_and_takes_the_pidfile_as_the_start_does(setup, public_dir):
    """A FIFO at the pidfile's path (another account may make one where others may
    write): the check opens nothing there, as the start renames its pidfile over it; a
    FIFO log_file that no process reads, which the start could not open, is said in one
    line. Either way the check exits at once."""
    fifo = os.path.join(public_dir, "fifo")
    os.mkfifo(fifo)
    setup.reconfigure(fingerd__pidfile=fifo)
    checked = run_fingerd("-t", "-c", setup.config_file, timeout=20)
    assert checked.returncode == 0, checked.stderr
    setup.reconfigure(fingerd__pidfile=setup.pidfile, fingerd__log_file=fifo)
    refused = refusal("-t", "-c", setup.config_file)
    assert refused.startswith(f"{setup.config_file}:") and refused.endswith(
        f": [fingerd] log_file: {fifo}: cannot open log file: No such device or address\n"
    ) and refused.count("\n") == 1, refused
    setup.reconfigure(fingerd__pidfile=fifo, fingerd__log_file=None)
    setup.start()
    try:
        assert stat.S_ISREG(os.lstat(fifo).st_mode)
        assert read_pid(fifo) == setup.proc.pid
    finally:
        assert setup.stop() == 0


def test_check_takes_missing_directories_the_start_makes_and_makes_none(setup, public_dir):
    socket_path = os.path.join(public_dir, "run", "fingerd", "setter.sock")
    log_file = os.path.join(public_dir, "fingerd.log")
    setup.reconfigure(setter__socket=socket_path, fingerd__log_file=log_file)
    assert run_fingerd("-t", "-c", setup.config_file).returncode == 0
    assert not os.path.exists(os.path.join(public_dir, "run")) and not os.path.exists(log_file)


@pytest.mark.parametrize("key", ["pidfile", "users_file"])
def test_an_empty_pidfile_or_users_file_is_refused_by_the_check_as_by_the_start(setup, key):
    """Empty, either would name the directory fingerd runs in: the start failed saying
    ": cannot take the pidfile (.NAME.tmp): Is a directory", a .lock left behind, or took
    that directory, or the one it is in, for the users file, which -t passed as valid."""
    setup.reconfigure(**{f"fingerd__{key}": ""})
    reason = f": [fingerd] {key}: expected a path; leave the line out for the default\n"
    checked = refusal("-t", "-c", setup.config_file)
    assert checked.endswith(reason) and checked.count("\n") == 1, checked
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        started = subprocess.run([sys.executable, "-m", "fingerd", "-n", "-c", setup.config_file],
                                 cwd=work, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert started.returncode == MISCONFIGURED and started.stderr.endswith(reason), \
            started.stderr
        assert os.listdir(work) == []


def dumped(config_file):
    """``fingerd -T``'s standard output, once it exited 0 saying the configuration valid on
    standard error, read back as a configuration (from elsewhere: its paths are resolved)."""
    result = run_fingerd("-T", "-c", config_file)
    assert result.returncode == 0, result.stderr
    assert "configuration valid" in result.stderr
    return dataclasses.replace(parse_config(result.stdout, "/elsewhere/f.conf"), path=config_file)


def on_free_ports(config_file, ports):
    """``config_file`` with its finger, setter and metrics on free loopback ports, for a
    check: -t and -T name an address another program holds, and the defaults (79, 1079,
    9179) may be held on this machine."""
    with open(config_file, "a") as f:
        for section in ("finger", "setter", "metrics"):
            f.write(f"[{section}]\nlisten = 127.0.0.1:{ports.take()}\n")
    return config_file


def bundled_configuration(directory, ports):
    """A copy of init/fingerd.conf as shipped in ``directory``, naming nobody where its
    account does not exist (the package makes it; -T checks the account as -t does), its
    listening addresses on free ports."""
    copy = os.path.join(directory, "fingerd.conf")
    shutil.copy(os.path.join(ROOT, "init", "fingerd.conf"), copy)
    try:
        pwd.getpwnam("fingerd")
    except KeyError:
        edit(copy, "\nuser = fingerd ", "\nuser = nobody ")
    for old in ("0.0.0.0:79, [::]:79", "127.0.0.1:1079", "127.0.0.1:9179"):
        edit(copy, f"listen = {old}", f"listen = 127.0.0.1:{ports.take()}")
    return copy


def test_dump_prints_the_effective_configuration_as_a_file(setup, public_dir, ports):
    bundled = bundled_configuration(public_dir, ports)
    assert dumped(bundled) == load_config(bundled)
    minimal = pathlib.Path(public_dir, "minimal.conf")
    minimal.write_text("[fingerd]\nuser = nobody\nusers_file = users\n")
    on_free_ports(str(minimal), ports)
    assert dumped(str(minimal)) == load_config(str(minimal))
    assert dumped(setup.config_file) == load_config(setup.config_file)


def test_dump_of_an_invalid_configuration_prints_the_errors_and_exits_1(setup):
    edit(setup.config_file, "threads = 4", "threads = four")
    result = run_fingerd("-T", "-c", setup.config_file)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"{setup.config_file}:7: [fingerd] threads: "
                             f"expected an integer from 1 to 1024\n")


def test_check_warns_of_a_missing_users_file_as_start_does(setup):
    os.unlink(setup.users_file)
    result = run_fingerd("-t", "-c", setup.config_file)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"fingerd: {setup.users_file}: no users file; starting with no users\n"
    assert "0 users" in result.stdout


def test_check_of_free_addresses_is_valid_and_keeps_none_bound(setup):
    assert run_fingerd("-t", "-c", setup.config_file).returncode == 0
    for port in (setup.finger_port, setup.setter_port, setup.metrics_port):
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))


def config_line(config_file, text):
    """The number of the line of ``config_file`` that starts with ``text``."""
    with open(config_file) as f:
        return next(number for number, line in enumerate(f, 1) if line.startswith(text))


@pytest.mark.parametrize("option", ("-t", "-T"))
@pytest.mark.parametrize("family, host", ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")),
                         ids=("same-address", "dual-stack-wildcard"))
def test_check_reports_an_address_another_program_holds(setup, option, family, host):
    with socket.socket(family) as holder:
        if family == socket.AF_INET6:
            holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        holder.bind((host, setup.metrics_port))
        holder.listen(1)
        result = run_fingerd(option, "-c", setup.config_file)
    line = config_line(setup.config_file, "listen = 127.0.0.1:" + str(setup.metrics_port))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"{setup.config_file}:{line}: [metrics] listen: "
                             f"127.0.0.1:{setup.metrics_port} is in use by another program\n")


@pytest.mark.parametrize("address", ("203.0.113.1:{port}", pytest.param(
    "[2001:db8::1]:{port}", marks=needs_ipv6)), ids=("ipv4", "ipv6"))
def test_check_refuses_a_host_not_on_this_machine_as_the_start_does(setup, address):
    """An address no interface has (from the ranges kept for documentation; not 192.0.2.0/24,
    where the machines the tests run on have theirs): -t and -T
    refuse it in the start's words, so that the init script's restart, which checks
    first, does not stop the running daemon for a start that fails on it."""
    address = address.format(port=setup.finger_port)
    setup.reconfigure(finger__listen=address)
    line = config_line(setup.config_file, f"listen = {address}")
    checked = [refusal(option, "-c", setup.config_file) for option in ("-t", "-T")]
    assert checked == [f"{setup.config_file}:{line}: [finger] listen: {address}: no such "
                       f"address on this machine\n"] * 2
    assert refusal("-n", "-c", setup.config_file) == (
        f"fingerd: cannot listen on {address} ([finger] listen): no such address on this "
        f"machine\n")


def test_check_reports_a_setter_socket_another_program_serves_or_a_file_in_its_way(setup,
                                                                                   public_dir):
    path = os.path.join(public_dir, "setter.sock")
    edit(setup.config_file, "[setter]\n", f"[setter]\nsocket = {path}\n")
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(path)
        holder.listen(1)
        result = run_fingerd("-t", "-c", setup.config_file)
    assert result.returncode == 1
    line = config_line(setup.config_file, "socket = ")
    assert result.stderr == (f"{setup.config_file}:{line}: [setter] socket: {path}: "
                             f"another program serves it\n")
    # Nobody serves the file left behind now: a start replaces it.
    assert run_fingerd("-t", "-c", setup.config_file).returncode == 0
    os.unlink(path)
    open(path, "w").close()
    result = run_fingerd("-t", "-c", setup.config_file)
    assert (result.returncode, result.stderr) == (
        1, f"{setup.config_file}:{line}: [setter] socket: {path}: a file that is not a socket "
           f"is in the way\n")


def test_check_accepts_the_addresses_the_running_daemon_holds(make_daemon, public_dir):
    d = make_daemon(setter__socket=os.path.join(public_dir, "setter.sock")).start()
    for option in ("-t", "-T"):
        result = run_fingerd(option, "-c", d.config_file)
        assert result.returncode == 0, result.stderr
        assert "configuration valid" in result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the daemon's descriptors are root's")
def test_unprivileged_check_skips_what_it_cannot_tell(make_daemon):
    """A port below 1024 it may not bind, and who holds the ports of a daemon whose
    descriptors are root's: neither fails the check."""
    d = make_daemon()
    with open(d.config_file) as f:
        text = f.read()
    d.start()
    public = tempfile.mkdtemp(prefix="fingerd-test-")
    try:
        os.chmod(public, 0o755)
        config = os.path.join(public, "fingerd.conf")
        with open(config, "w") as f:
            f.write(text.replace(f"127.0.0.1:{d.finger_port}", "127.0.0.1:79"))
        from fingerd import cli
        code, stderr = main_as_nobody(cli.main, ["-t", "-c", config])
    finally:
        shutil.rmtree(public)
    assert (code, stderr) == (0, "")


def test_check_reports_configuration_errors_with_file_and_line(setup):
    edit(setup.config_file, "threads = 4", "threads = four\nbogus = 1")
    stderr = refusal("-t", "-c", setup.config_file)
    lines = stderr.splitlines()
    assert f"{setup.config_file}:7: [fingerd] threads: expected an integer from 1 to 1024" \
        in lines
    assert f"{setup.config_file}:8: [fingerd] unknown key 'bogus'" in lines


@pytest.mark.parametrize("option, mode, bad, line, status", [
    ("-t", "ab", b"no colon here\n", 3, 1),  # the check names file and line
    ("-n", "wb", b"bad\n", 1, MISCONFIGURED),  # a start fails as it does, before binding
])
def test_users_file_errors_are_reported_with_file_and_line(setup, option, mode, bad, line,
                                                            status):
    with open(setup.users_file, mode) as f:
        f.write(bad)
    stderr = refusal(option, "-c", setup.config_file, status=status)
    assert stderr.strip() == f"{setup.users_file}:{line}: expected user:status"


@pytest.mark.parametrize("make", (os.mkdir, os.mkfifo), ids=("directory", "fifo"))
def test_a_users_file_that_is_no_regular_file_fails_a_start_as_misconfigured(setup, make):
    """No retry mends it until the operator acts, so the start exits 78, which
    fingerd.service does not restart every 2 s; the check says the same and exits 1."""
    os.unlink(setup.users_file)
    make(setup.users_file)
    reason = f"fingerd: {setup.users_file}: cannot read users file: not a regular file\n"
    assert refusal("-t", "-c", setup.config_file) == reason
    assert refusal("-n", "-c", setup.config_file, status=MISCONFIGURED) == reason


#: Run first by fingerd (``run_first``): every read of the users file fails as on a
#: failing disk.
FAILING_READ = ("import errno, os\n"
                "from fingerd.users import fileio\n"
                "def read_bounded(*args, **kwargs):\n"
                "    raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
                "fileio.read_bounded = read_bounded\n")


def test_a_users_file_read_that_fails_for_a_passing_reason_fails_a_start_a_retry_may_mend(
        setup, public_dir):
    """An I/O error may pass (a disk or a network file system recovering), so the start
    exits 1, which fingerd.service retries, with the same words as a lasting one."""
    env = run_first(os.path.join(public_dir, "first"), FAILING_READ)
    result = run_fingerd("-n", "-c", setup.config_file, env=env)
    assert (result.returncode, result.stderr) == (
        1, f"fingerd: {setup.users_file}: cannot read users file: Input/output error\n")


def test_unknown_user_fails_with_its_line(setup):
    edit(setup.config_file, "user = nobody", "user = no-such-account-here")
    stderr = refusal("-t", "-c", setup.config_file)
    assert stderr.strip() == (f"{setup.config_file}:2: [fingerd] user: "
                              f"no such account 'no-such-account-here'")


def test_unknown_group_fails(setup):
    edit(setup.config_file, "user = nobody", "user = nobody\ngroup = no-such-group-here")
    stderr = refusal("-n", "-c", setup.config_file, status=MISCONFIGURED)
    assert "no such group 'no-such-group-here'" in stderr


def test_missing_configuration_fails(tmp_path):
    stderr = refusal("-n", "-c", str(tmp_path / "none.conf"), status=MISCONFIGURED)
    assert "cannot read configuration" in stderr


def test_a_configuration_that_is_no_regular_file_is_refused_never_waited_on(tmp_path):
    """A FIFO named by -c (made by mistake, or by another account where it may write) is
    refused at once, by the check, the start and fingerd-ctl alike."""
    fifo = tmp_path / "fingerd.conf"
    os.mkfifo(fifo)
    for args, status in ((("-t",), 1), (("-n",), MISCONFIGURED), ((), MISCONFIGURED)):
        result = run_fingerd(*args, "-c", str(fifo), timeout=30)
        assert result.returncode == status and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.endswith(f"{fifo}: cannot read configuration: not a regular file\n")
    status = subprocess.run([sys.executable, "-m", "fingerd.ctl", "-c", str(fifo),
                             "--pidfile", str(tmp_path / "fingerd.pid"), "status"], cwd=ROOT,
                            timeout=30, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert status.returncode == 3, status.stderr
    assert "not a regular file" in status.stderr


def test_port_in_use_fails_in_one_line(setup):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", setup.setter_port))
        busy.listen(1)
        stderr = refusal("-n", "-c", setup.config_file)
    assert stderr == (f"fingerd: cannot listen on 127.0.0.1:{setup.setter_port} "
                      f"([setter] listen): address already in use\n")


def test_port_in_use_leaves_no_other_port_bound(setup):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", setup.metrics_port))
        busy.listen(1)
        refusal("-n", "-c", setup.config_file)
    with socket.socket() as again:
        again.bind(("127.0.0.1", setup.finger_port))


def privileged_port_config(setup):
    edit(setup.config_file, f"127.0.0.1:{setup.finger_port}", "127.0.0.1:79")
    return setup.config_file


def test_privileged_port_without_root_names_the_option(setup):
    config = privileged_port_config(setup)
    if os.geteuid() != 0:
        stderr = refusal("-n", "-c", config, status=MISCONFIGURED)
    else:
        public = tempfile.mkdtemp(prefix="fingerd-test-")
        try:
            os.chmod(public, 0o755)
            for name in ("fingerd.conf", "users"):
                shutil.copy(os.path.join(setup.dir, name), public)
            edit(os.path.join(public, "fingerd.conf"), setup.dir, public)
            log_file = os.path.join(public, "fingerd.log")
            edit(os.path.join(public, "fingerd.conf"), "[fingerd]\n",
                 f"[fingerd]\nlog_file = {log_file}\n")
            open(log_file, "w").close()
            os.chown(log_file, NOBODY, NOBODY)
            stderr = run_as_nobody_in_a_fork(["-n", "-c", os.path.join(public, "fingerd.conf")])
            assert logged_lines(log_file) == [
                "ERROR startup failed: " + stderr.strip().removeprefix("fingerd: ")]
        finally:
            shutil.rmtree(public)
    assert stderr == ("fingerd: cannot listen on 127.0.0.1:79 ([finger] listen): ports below "
                      "1024 need root; start as root or set [finger] listen to a port of 1024 "
                      "or more\n")


def run_as_nobody_in_a_fork(argv):
    """Run cli.main as nobody in a forked child; its standard error, once it failed on
    what no retry mends."""
    from fingerd import cli
    code, stderr = main_as_nobody(cli.main, argv)
    assert code == MISCONFIGURED, stderr
    return stderr


@pytest.fixture
def logged(public_dir, ports):
    """A configuration with a log_file, which does not exist yet."""
    return Daemon(public_dir, ports, fingerd__log_file=os.path.join(public_dir, "fingerd.log"))


def logged_lines(path):
    """The lines of the log file at ``path`` without their time and pid."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split(" ", 3)[3] for line in f.read().splitlines()]


@pytest.mark.parametrize("mode", (["-n"], []), ids=("foreground", "detached"))
def test_a_failed_start_is_written_once_to_the_log_file_too(logged, mode):
    """Each reason on standard error, and the same once in the log, where an operator
    looks after a boot; a check (-t) starts nothing and logs nothing."""
    d = logged
    log_file = os.path.join(d.dir, "fingerd.log")
    reasons = []

    def fails(status=MISCONFIGURED):
        """The reason on standard error, its lines joined as the log's one line has them."""
        result = run_fingerd(*mode, "-c", d.config_file)
        assert result.returncode == status
        reasons.append("; ".join(result.stderr.strip().splitlines()).removeprefix("fingerd: "))
        assert logged_lines(log_file) == [f"ERROR startup failed: {reason}"
                                          for reason in reasons]
        run_fingerd("-t", "-c", d.config_file)
        assert len(logged_lines(log_file)) == len(reasons), "-t logs nothing"
        return reasons[-1]

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", d.setter_port))
        busy.listen(1)
        assert fails(1) == (f"cannot listen on 127.0.0.1:{d.setter_port} ([setter] listen): "
                           "address already in use")
    with open(d.users_file, "ab") as f:
        f.write(b"no colon here\n")
    assert fails() == f"{d.users_file}:3: expected user:status"
    edit(d.config_file, "user = nobody", "user = no-such-account-here\nbogus = 1")
    edit(d.config_file, "threads = 4", "threads = four")
    assert fails() == (f"{d.config_file}:3: [fingerd] unknown key 'bogus'; {d.config_file}:8: "
                       "[fingerd] threads: expected an integer from 1 to 1024")
    edit(d.config_file, "bogus = 1\n", "")
    edit(d.config_file, "threads = four", "threads = 4")
    assert fails() == (f"{d.config_file}:2: [fingerd] user: no such account "
                       "'no-such-account-here'")
    assert os.stat(log_file).st_mode & 0o777 == 0o640


#: Runs fingerd with syslog at the socket argv[1], as it would be at /dev/log.
WITH_SYSLOG_AT = ("import sys; from fingerd import cli, logsetup; "
                  "logsetup.SYSLOG_SOCKET = sys.argv[1]; raise SystemExit(cli.main(sys.argv[2:]))")


def test_the_configuration_file_is_etc_fingerd_fingerd_conf_unless_c_names_another():
    assert parse_args([]).config == "/etc/fingerd/fingerd.conf"
    assert parse_args(["-c", "other.conf"]).config == "other.conf"


def test_without_log_file_a_detached_daemon_logs_to_syslog_as_facility_daemon(setup,
                                                                              public_dir):
    """Its start at priority info (<30>); the warning that the worker's account is nobody
    at priority warning (<28>)."""
    syslog_path = os.path.join(public_dir, "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(syslog_path)
        try:
            started = subprocess.run([sys.executable, "-c", WITH_SYSLOG_AT, syslog_path, "-c",
                                      setup.config_file], cwd=ROOT, stdin=subprocess.DEVNULL,
                                     capture_output=True, text=True, timeout=30)
            assert (started.returncode, started.stderr) == (0, "")
            syslog.settimeout(10)
            received = []
            while not any(" starting: finger on " in message for message in received):
                assert len(received) < 10, received
                received.append(syslog.recv(4096).decode())
        finally:
            end_by_pidfile(setup.pidfile)
    pid = received[0].partition("[")[2].partition("]")[0]
    assert [message.partition("]")[0] for message in received] == (
        [f"<28>fingerd[{pid}"] * (len(received) - 1) + [f"<30>fingerd[{pid}"]), received
    assert "[fingerd] user = nobody: every other service running as it" in received[0]


def test_without_log_file_a_detached_start_that_fails_is_written_to_syslog(setup, tmp_path,
                                                                          ports):
    """Facility daemon, priority err (<27>); in the foreground the reason goes to standard
    error alone, which is then the log. When the configuration cannot be read there is
    no log_file to look for: syslog when detached, as without one; a log_file that cannot
    be opened falls back to syslog too."""
    syslog_path = str(tmp_path / "log")
    unopenable = str(tmp_path / "no-such-directory" / "fingerd.log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog, \
            socket.socket() as busy:
        syslog.bind(syslog_path)
        busy.bind(("127.0.0.1", setup.setter_port))
        busy.listen(1)
        cases = {"busy port": setup.config_file, "no configuration": str(tmp_path / "none.conf")}
        cases["unopenable log_file"] = str(tmp_path / "unopenable.conf")
        shutil.copy(setup.config_file, cases["unopenable log_file"])
        edit(cases["unopenable log_file"], "[fingerd]\n", f"[fingerd]\nlog_file = {unopenable}\n")
        edit(cases["unopenable log_file"], f":{setup.setter_port}\n", f":{ports.take()}\n")
        detached = {}
        for mode in (["-n"], []):
            for case, config in cases.items():
                proc = subprocess.Popen([sys.executable, "-c", WITH_SYSLOG_AT, syslog_path,
                                         *mode, "-c", config], cwd=ROOT,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                stderr = proc.communicate(timeout=30)[1]
                status = MISCONFIGURED if case == "no configuration" else 1
                assert proc.returncode == status and stderr.count("\n") == 1, stderr
                if not mode:
                    detached[proc.pid] = (case, stderr.strip().removeprefix("fingerd: "))
        syslog.settimeout(10)
        received = [syslog.recv(4096).decode() for _ in detached]
        syslog.setblocking(False)
        with pytest.raises(BlockingIOError):
            syslog.recv(4096)
    assert received == [f"<27>fingerd[{pid}]: startup failed: {reason}\0"
                        for pid, (_case, reason) in detached.items()]
    reasons = dict(detached.values())
    assert reasons["no configuration"] == (f"{tmp_path}/none.conf: cannot read configuration: "
                                           "No such file or directory")
    assert reasons["unopenable log_file"] == (f"{unopenable}: cannot open log file: "
                                              "No such file or directory")
