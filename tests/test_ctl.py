"""Daemon mode and fingerd-ctl (fingerd-ctl(8))."""

import contextlib
import os
import subprocess
import sys

import pytest

from fingerd.config import DEFAULT_PATH
from fingerd.process.pidfile import RUNNING, probe
from tests.support import ROOT
from tests.support.polling import wait_until


def run(module, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def fingerd(d, *args):
    return run("fingerd", "-c", d.config_file, *args)


def ctl(d, *args):
    return run("fingerd.ctl", "-c", d.config_file, *args)


def test_detached_daemon_and_every_ctl_command(detached):
    d = detached
    started = fingerd(d)
    assert started.returncode == 0, started.stderr
    state, pid = probe(d.pidfile)
    assert state == RUNNING
    assert pid != os.getpid() and os.path.exists(f"/proc/{pid}")
    assert ctl(d, "status").stdout == f"fingerd is running (pid {pid})\n"
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"

    set_by_ctl = ctl(d, "set", "alice", "Set by ctl")
    assert (set_by_ctl.returncode, set_by_ctl.stdout) == (
        0, 'alice: status set to "Set by ctl"\n')
    got = ctl(d, "get", "alice")
    assert (got.returncode, got.stdout) == (0, "Set by ctl\n")
    refused = ctl(d, "set", "alice", "x" * 300)
    assert refused.returncode == 1
    assert "status longer than 256 bytes" in refused.stderr

    with open(d.users_file, "ab") as f:
        f.write(b"frank:Via reload\n")
    assert ctl(d, "reload").returncode == 0
    wait_until(lambda: d.finger(b"frank\r\n") == b"Via reload\r\n", what="the reload")

    again = fingerd(d)
    assert again.returncode == 1
    assert f"already running (pid {pid}" in again.stderr

    stopped = ctl(d, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(d.pidfile)
    status = ctl(d, "status")
    assert (status.returncode, status.stdout) == (3, "fingerd is not running\n")
    assert ctl(d, "reload").returncode == 3
    assert ctl(d, "stop").returncode == 0


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_pidfile_is_reported_then_taken_over(detached):
    d = detached
    with open(d.pidfile, "w") as f:
        f.write(f"{dead_pid()}\n")
    status = ctl(d, "status")
    assert status.returncode == 1
    assert "pidfile" in status.stdout and "remains" in status.stdout
    assert fingerd(d).returncode == 0
    assert ctl(d, "status").returncode == 0
    assert ctl(d, "stop").returncode == 0


def test_a_pidfile_naming_another_live_process_never_gets_it_signalled(detached):
    """Without the daemon's lock, the pid in a pidfile left behind may by now be
    anyone's: fingerd-ctl and the init script send it nothing."""
    d = detached
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        with open(d.pidfile, "w") as f:
            f.write(f"{bystander.pid}\n")
        status = ctl(d, "status")
        assert status.returncode == 1 and f"remains (pid {bystander.pid})" in status.stdout
        stopped = ctl(d, "stop")
        assert (stopped.returncode, stopped.stdout) == (
            0, f"fingerd is not running; removed its stale pidfile {d.pidfile}\n")
        assert ctl(d, "status").returncode == 3
        with open(d.pidfile, "w") as f:
            f.write(f"{bystander.pid}\n")
        assert ctl(d, "reload").returncode == 3
        assert ctl(d, "reopen").returncode == 3
        assert bystander.poll() is None, "the bystander was signalled"
        assert fingerd(d).returncode == 0
        assert probe(d.pidfile)[1] != bystander.pid
        assert ctl(d, "stop").returncode == 0
        assert bystander.poll() is None, "the bystander was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def test_failed_startup_is_reported_by_the_starting_process(detached, ports):
    """The worker fails once the parent has bound and detached: the process that was
    started still says why, and exits 1."""
    pytest.importorskip("redis")
    d = detached
    d.reconfigure(store__backend="redis", store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    result = fingerd(d)
    assert result.returncode == 1
    assert "worker exited with status 78 during startup: " in result.stderr
    assert "store unavailable" in result.stderr
    assert not os.path.exists(d.pidfile)


def test_a_users_file_the_worker_cannot_read_fails_the_check_and_the_start_before_binding(
        detached, public_dir):
    d = detached
    os.chmod(d.users_file, 0o600)
    if os.geteuid() != 0:
        pytest.skip("only an unprivileged worker can fail to read a file its parent read")
    reason = (f"fingerd: {d.users_file}: the worker, run as nobody, cannot read the users "
              f"file: Permission denied\n")
    checked = fingerd(d, "-t")
    assert (checked.returncode, checked.stdout, checked.stderr) == (1, "", reason)
    started = fingerd(d)
    assert (started.returncode, started.stderr) == (78, reason), "EX_CONFIG: not restarted"
    assert not os.path.exists(d.pidfile)
    with open(os.path.join(public_dir, "fingerd.log")) as f:
        log = f.read()
    assert "startup failed: " + reason.partition(": ")[2].rstrip() in log
    assert " starting: finger on " not in log, "the sockets were bound"


def test_reopen_has_the_daemon_named_by_the_pidfile_reopen_its_log_file(detached,
                                                                        public_dir):
    d = detached
    log_file = os.path.join(public_dir, "fingerd.log")
    idle = ctl(d, "reopen")
    assert (idle.returncode, idle.stdout) == (3, "fingerd is not running\n")
    assert fingerd(d).returncode == 0
    pid = probe(d.pidfile)[1]
    os.rename(log_file, log_file + ".1")  # as logrotate moves it
    reopened = ctl(d, "reopen")
    assert (reopened.returncode, reopened.stdout, reopened.stderr) == (
        0, f"fingerd (pid {pid}) was asked to reopen its log file\n", "")

    def reopened_log():
        with contextlib.suppress(FileNotFoundError), open(log_file) as f:
            return "SIGUSR1: log file reopened" in f.read()
        return False

    wait_until(reopened_log, what="the new log file")
    assert os.stat(log_file).st_mode & 0o777 == 0o640
    assert ctl(d, "stop").returncode == 0
    assert ctl(d, "reopen").returncode == 3


def set_through_a_missing_socket(d):
    """What ``set`` says after its first line, with ``[setter] socket`` naming no file."""
    socket_path = os.path.join(d.dir, "setter.sock")
    d.reconfigure(setter__socket=socket_path)
    result = ctl(d, "set", "alice", "x")
    first = (f"fingerd-ctl: cannot reach the setter at its configured socket {socket_path}: "
             "No such file or directory\n")
    assert (result.returncode, result.stdout, result.stderr[:len(first)]) == (1, "", first)
    return result.stderr[len(first):]


def test_get_and_set_when_not_running_say_so_and_how_to_start_it(detached):
    d = detached
    start = f"fingerd-ctl: fingerd is not running; start it with: fingerd -c {d.config_file}\n"
    got = ctl(d, "get", "alice")
    assert (got.returncode, got.stdout, got.stderr) == (1, "", (
        f"fingerd-ctl: cannot reach the finger service at its configured address "
        f"127.0.0.1:{d.finger_port}: "
        f"Connection refused\n{start}"))
    refused = ctl(d, "set", "alice", "x")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", (
        f"fingerd-ctl: cannot reach the setter at its configured address "
        f"127.0.0.1:{d.setter_port}: "
        f"Connection refused\n{start}"))
    assert set_through_a_missing_socket(d) == start
    with open(d.pidfile, "w") as f:
        f.write(f"{dead_pid()}\n")
    stale = ctl(d, "set", "alice", "x").stderr.splitlines()[-1]
    assert stale.startswith(f"fingerd-ctl: fingerd is not running (its pidfile {d.pidfile} "
                            "remains, pid ")
    assert stale.endswith(f"); start it with: fingerd -c {d.config_file}")


def test_the_default_configuration_is_started_by_the_init_script_where_there_is_one(
        tmp_path, monkeypatch, capsys):
    from fingerd import ctl_client as ctl
    from fingerd.finger.client import NoAnswer
    init_script = tmp_path / "fingerd"
    monkeypatch.setattr(ctl, "INIT_SCRIPT", str(init_script))
    pidfile = str(tmp_path / "fingerd.pid")

    def hint(config_path):
        ctl.unreachable("the setter at X", NoAnswer("No such file or directory"), config_path,
                        pidfile)
        return capsys.readouterr().err.splitlines()[-1]

    assert hint(DEFAULT_PATH) == f"fingerd-ctl: fingerd is not running; start it with: " \
                                 f"fingerd -c {DEFAULT_PATH}", "no init script"
    init_script.write_text("")
    assert hint(DEFAULT_PATH) == f"fingerd-ctl: fingerd is not running; start it with: " \
                                 f"{init_script} start"
    other = str(tmp_path / "other.conf")
    assert hint(other).endswith(f"start it with: fingerd -c {other}"), "it starts another"


#: What get and set say after their first line when fingerd runs but not at the
#: configured address they asked (tests/test_activation.py too).
RUNNING_ELSEWHERE = (
    "fingerd-ctl: fingerd is running (pid {pid}) but not answering there: fingerd-ctl uses the "
    "configured addresses, never sockets systemd handed over (socket activation), and they "
    "may have changed since the daemon's last start or reload; else see its log\n")


def test_set_says_that_a_running_fingerd_does_not_listen_where_it_asked(detached):
    """A daemon started before its configuration was changed, and not reloaded."""
    d = detached
    assert fingerd(d).returncode == 0
    pid = probe(d.pidfile)[1]
    assert set_through_a_missing_socket(d) == RUNNING_ELSEWHERE.format(pid=pid)


def test_usage_errors_exit_2(detached):
    assert ctl(detached, "frobnicate").returncode == 2
    assert ctl(detached, "set").returncode == 2
    assert ctl(detached, "set", "alice", "x", "y").returncode == 2


def break_config(d, pidfile_line=True):
    """A typo in the running daemon's configuration; without ``pidfile_line``, the
    pidfile line goes too."""
    with open(d.config_file) as f:
        lines = f.read().splitlines()
    if not pidfile_line:
        lines = [line for line in lines if not line.startswith("pidfile")]
    with open(d.config_file, "w") as f:
        f.write("\n".join(lines + ["treads = 4"]) + "\n")


def test_status_reload_and_stop_work_from_the_pidfile_when_the_configuration_breaks(
        detached):
    d = detached
    assert fingerd(d).returncode == 0
    pid = probe(d.pidfile)[1]
    break_config(d)
    status = ctl(d, "status")
    assert (status.returncode, status.stdout) == (0, f"fingerd is running (pid {pid})\n")
    assert "unknown key 'treads'" in status.stderr
    assert f"using the pidfile {d.pidfile} (its pidfile line)" in status.stderr
    assert ctl(d, "set", "alice", "x").returncode == 1, "set needs the configuration"
    stopped = ctl(d, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(f"/proc/{pid}")


def test_a_reload_refused_for_a_broken_configuration_says_its_fault_once(detached):
    """The daemon's refusal names the fault fingerd-ctl found loading the file: said
    once; with nothing running to say it, fingerd-ctl says it."""
    d = detached
    assert fingerd(d).returncode == 0
    break_config(d)
    refused = ctl(d, "reload")
    assert refused.returncode == 1
    assert refused.stderr.count("unknown key 'treads'") == 1, refused.stderr
    assert "fingerd-ctl: reload refused: " in refused.stderr
    assert ctl(d, "stop").returncode == 0
    for args in (("reload",), ("reload", "--no-wait"), ("status",)):
        alone = ctl(d, *args)
        assert alone.returncode == 3, alone.stderr
        assert alone.stderr.count("unknown key 'treads'") == 1, (args, alone.stderr)


def test_without_a_pidfile_line_the_pidfile_option_then_the_default_is_used(detached):
    d = detached
    assert fingerd(d).returncode == 0
    pid = probe(d.pidfile)[1]
    break_config(d, pidfile_line=False)
    default = ctl(d, "status")
    assert "using the pidfile /run/fingerd.pid (the default)" in default.stderr
    given = ctl(d, "--pidfile", d.pidfile, "status")
    assert (given.returncode, given.stdout) == (0, f"fingerd is running (pid {pid})\n")
    assert f"using the pidfile {d.pidfile} (--pidfile)" in given.stderr
    assert ctl(d, "--pidfile", d.pidfile, "stop").returncode == 0
    assert not os.path.exists(f"/proc/{pid}")


def test_get_speaks_proxy_protocol_to_a_finger_service_behind_a_proxy(make_daemon):
    """With proxy_protocol on, finger reads a PROXY header first: get sends one of its own
    (UNKNOWN: its own address is kept) rather than being closed unanswered."""
    d = make_daemon(finger__proxy_protocol="yes").start()
    got = ctl(d, "get", "alice")
    assert (got.returncode, got.stdout, got.stderr) == (0, "Happy and well\n", "")


def test_get_says_so_when_the_finger_service_answers_nothing(make_daemon):
    d = make_daemon(finger__allow_from="192.0.2.0/24").start()
    got = ctl(d, "get", "alice")
    assert (got.returncode, got.stdout) == (1, "")
    assert got.stderr == (f"fingerd-ctl: the finger service at 127.0.0.1:{d.finger_port} "
                          f"answered nothing; see its log\n")


def test_arguments_that_are_not_utf_8_go_as_their_bytes_for_the_service_to_answer(make_daemon):
    """A status or a name in Latin-1 from a shell: a traceback (UnicodeEncodeError)
    before; now the setter refuses the status and finger answers for the name."""
    d = make_daemon().start()
    base = [sys.executable, "-m", "fingerd.ctl", "-c", d.config_file]
    refused = subprocess.run(base + ["set", "alice", b"caf\xe9"], cwd=ROOT, timeout=60,
                             stdin=subprocess.DEVNULL, capture_output=True)
    assert refused.returncode == 1 and b"Traceback" not in refused.stderr
    assert refused.stderr.startswith(b"fingerd-ctl: refused: ")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    got = subprocess.run(base + ["get", b"al\xffice"], cwd=ROOT, timeout=60,
                         stdin=subprocess.DEVNULL, capture_output=True)
    assert (got.returncode, got.stdout, got.stderr) == (0, b"No such user\n", b"")


@pytest.mark.parametrize("args", [("status",), ("set", "alice", "Written"), ("get", "alice")])
def test_a_standard_output_that_takes_nothing_is_said_once_without_a_traceback(
        make_daemon, args):
    d = make_daemon().start()
    with open("/dev/full", "w") as full:
        result = d.ctl(*args, stdout=full)
    assert (result.returncode, result.stderr) == (
        1, "fingerd-ctl: cannot write standard output: No space left on device\n")
    if args[0] == "set":
        assert d.finger(b"alice\r\n") == b"Written\r\n", "set all the same"


def test_a_closed_pipe_on_standard_output_is_said_once_without_a_traceback(make_daemon):
    d = make_daemon().start()
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as closed:
        result = d.ctl("get", "alice", stdout=closed)
    assert (result.returncode, result.stderr) == (
        1, "fingerd-ctl: cannot write standard output: Broken pipe\n")

