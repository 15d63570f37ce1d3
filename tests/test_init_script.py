"""The LSB init script, run from a copy as /etc/init.d/fingerd would be."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys

import pytest

from fingerd.process.pidfile import RUNNING, probe
from tests.support import ROOT
from tests.support.daemon import end_by_pidfile
from tests.support.net import can_connect
from tests.support.polling import wait_until

WRAPPER = """#!/bin/sh
PYTHONPATH={root} exec {python} -m {module} "$@"
"""


@pytest.fixture
def init(make_daemon, public_dir):
    """The init script and fingerd, fingerd-ctl wrappers running this checkout."""
    d = make_daemon(fingerd__log_file=os.path.join(public_dir, "fingerd.log"))
    bin_dir = os.path.join(public_dir, "bin")
    os.mkdir(bin_dir)
    for name, module in (("fingerd", "fingerd"), ("fingerd-ctl", "fingerd.ctl")):
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write(WRAPPER.format(root=ROOT, python=sys.executable, module=module))
        os.chmod(path, 0o755)
    script = os.path.join(public_dir, "fingerd.init")
    shutil.copy(os.path.join(ROOT, "init", "fingerd"), script)
    assert os.stat(script).st_mode & stat.S_IXUSR
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "CONFIG": d.config_file,
           "FINGERD_DEFAULTS": os.path.join(public_dir, "no-defaults")}

    def action(name, stderr=subprocess.PIPE):
        return subprocess.run([script, name], env=d.env, stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=60, stdin=subprocess.DEVNULL)

    d.env, d.action = env, action
    yield d
    end_by_pidfile(d.pidfile)


def test_start_status_reload_stop_status(init):
    assert init.action("start").returncode == 0
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"
    status = init.action("status")
    assert status.returncode == 0 and "is running" in status.stdout
    with open(init.users_file, "ab") as f:
        f.write(b"gina:Init reload\n")
    assert init.action("reload").returncode == 0
    wait_until(lambda: init.finger(b"gina\r\n") == b"Init reload\r\n", what="the reload")
    assert init.action("start").returncode == 0, "start when running is not an error"
    assert init.action("stop").returncode == 0
    assert init.action("status").returncode == 3
    assert init.action("reload").returncode == 7
    assert init.action("stop").returncode == 0


def test_stop_after_the_daemon_died_leaves_it_stopped_not_dead(init):
    """A daemon killed leaves its pidfile: status says dead (1) until a stop, after
    which it says stopped (3), as LSB asks of a stop."""
    assert init.action("start").returncode == 0
    pid = probe(init.pidfile)[1]
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_until(lambda: probe(init.pidfile)[0] != RUNNING, what="the daemon to die")
    assert init.action("status").returncode == 1
    assert init.action("stop").returncode == 0
    assert not os.path.lexists(init.pidfile)
    assert init.action("status").returncode == 3


#: fingerd, overtaken by a start of its own just before it starts (fingerd -t is left
#: alone): the init script's check saw no daemon, yet one runs when its start comes.
OVERTAKEN = """#!/bin/sh
case " $* " in
    *" -t "*) ;;
    *) PYTHONPATH={root} {python} -m fingerd "$@" || exit 1 ;;
esac
PYTHONPATH={root} exec {python} -m fingerd "$@"
"""


def test_a_start_overtaken_by_another_start_succeeds(init, public_dir):
    """Two starts at once: the one that finds the daemon started by the other meanwhile
    succeeds, as a start on a running service does (LSB)."""
    overtaken = os.path.join(public_dir, "fingerd-overtaken")
    with open(overtaken, "w") as f:
        f.write(OVERTAKEN.format(root=ROOT, python=sys.executable))
    os.chmod(overtaken, 0o755)
    init.env["FINGERD"] = overtaken
    started = init.action("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "failed" not in started.stdout and "already running" in started.stdout
    assert started.stderr == ""
    assert probe(init.pidfile)[0] == RUNNING
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_the_defaults_file_names_the_configuration_when_the_environment_does_not(
        init, public_dir):
    defaults = os.path.join(public_dir, "defaults")
    with open(defaults, "w") as f:
        f.write(f"CONFIG={init.config_file}\n")
    del init.env["CONFIG"]
    init.env["FINGERD_DEFAULTS"] = defaults
    assert init.action("start").returncode == 0
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert init.action("status").returncode == 0
    assert init.action("stop").returncode == 0


def test_restart_gives_a_new_daemon(init):
    assert init.action("start").returncode == 0
    first = probe(init.pidfile)[1]
    assert init.action("restart").returncode == 0
    second = probe(init.pidfile)[1]
    assert second != first
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert init.action("force-reload").returncode == 0
    assert init.action("try-restart").returncode == 0
    assert probe(init.pidfile)[1] not in (first, second)
    # try-restart of a stopped daemon leaves it stopped (LSB).
    assert init.action("stop").returncode == 0
    assert init.action("try-restart").returncode == 0
    assert probe(init.pidfile)[0] != RUNNING


def test_unknown_action_is_a_usage_error(init):
    result = init.action("frobnicate")
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_lsb_header():
    with open(os.path.join(ROOT, "init", "fingerd")) as f:
        text = f.read()
    for field in ("Provides:", "Required-Start:", "Default-Start:", "Short-Description:"):
        assert f"# {field}" in text


def test_a_broken_configuration_neither_locks_out_nor_stops_the_running_daemon(init):
    assert init.action("start").returncode == 0
    pid = probe(init.pidfile)[1]
    with open(init.config_file, "a") as f:
        f.write("treads = 4\n")
    status = init.action("status")
    assert status.returncode == 0 and "is running" in status.stdout
    for action in ("restart", "try-restart"):
        refused = init.action(action)
        assert refused.returncode == 1
        assert refused.stderr.startswith("fingerd: not (re)started, fingerd -t finds:\n")
        assert "unknown key 'treads'" in refused.stderr
        assert probe(init.pidfile)[1] == pid, f"{action} left the daemon running"
    # start on a running daemon succeeds whatever the file says, and points it out.
    started = init.action("start")
    assert started.returncode == 0
    assert "already running" in started.stdout
    assert "configtest" in started.stderr
    assert probe(init.pidfile)[1] == pid
    tested = init.action("configtest")
    assert tested.returncode == 1 and "unknown key 'treads'" in tested.stderr
    refused = init.action("reload")
    assert refused.returncode == 1
    assert "reload refused: " in refused.stderr and "unknown key 'treads'" in refused.stderr
    assert probe(init.pidfile)[1] == pid
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert init.action("stop").returncode == 0
    assert not os.path.exists(f"/proc/{pid}")
    assert init.action("status").returncode == 3


def test_configtest_says_a_valid_file_is_valid(init):
    tested = init.action("configtest")
    assert tested.returncode == 0
    assert f"{init.config_file} is valid" in tested.stdout


def test_a_failed_start_says_why_on_a_line_of_its_own(init, ports):
    # A start that fails past fingerd -t's check, which does not ask Redis.
    pytest.importorskip("redis")
    init.reconfigure(store__backend="redis",
                     store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    failed = init.action("start", stderr=subprocess.STDOUT)
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    progress = [line for line in lines if line.startswith("Starting finger daemon")]
    assert progress and all("fingerd:" not in line.split("fingerd", 1)[1]
                            for line in progress), failed.stdout
    reason = [line for line in lines if line.startswith("fingerd: ")]
    assert reason and reason[0].startswith("fingerd: worker exited with status 78 during "
                                           "startup: "), failed.stdout
    assert probe(init.pidfile)[0] != RUNNING


#: fingerd as an operator racing the init script would leave it: the configuration
#: made invalid after ``fingerd -t`` passed it, just before the start.
EDITED_AFTER_THE_CHECK = WRAPPER.replace("#!/bin/sh\n", """#!/bin/sh
if [ "$1" != -t ]; then printf 'bogus = 1\\n' >> "$CONFIG"; fi
""")


def test_a_start_refused_on_its_configuration_exits_6_as_lsb_says(init):
    """fingerd's 78 (EX_CONFIG) is LSB's 6, program is not configured: init scripts say
    0 to 7."""
    fingerd = os.path.join(os.path.dirname(init.env["FINGERD_DEFAULTS"]), "bin", "fingerd")
    with open(fingerd, "w") as f:
        f.write(EDITED_AFTER_THE_CHECK.format(root=ROOT, python=sys.executable,
                                              module="fingerd"))
    failed = init.action("start", stderr=subprocess.STDOUT)
    assert failed.returncode == 6, failed.stdout
    assert "unknown key 'bogus'" in failed.stdout
    assert probe(init.pidfile)[0] != RUNNING


def held(port):
    """A listening socket of the test's own on 127.0.0.1:``port``."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    return holder


def in_use_line(config_file, section, port):
    """fingerd -t's line for ``[section] listen`` on 127.0.0.1:``port`` held by another
    program, the line number being that of the key in ``config_file``."""
    with open(config_file) as f:
        lines = f.read().splitlines()
    number = lines.index(f"[{section}]") + 2
    assert lines[number - 1] == f"listen = 127.0.0.1:{port}"
    return (f"{config_file}:{number}: [{section}] listen: 127.0.0.1:{port} is in use by "
            f"another program")


def test_a_start_onto_an_address_another_program_holds_says_so_before_starting(init):
    with held(init.metrics_port):
        failed = init.action("start", stderr=subprocess.STDOUT)
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert in_use_line(init.config_file, "metrics", init.metrics_port) in lines, failed.stdout
    assert not [line for line in lines if line.startswith("Starting finger daemon")]
    assert probe(init.pidfile)[0] != RUNNING


def test_restart_onto_an_address_another_program_holds_leaves_the_daemon_running(init, ports):
    assert init.action("start").returncode == 0
    pid = probe(init.pidfile)[1]
    web_port = ports.take()
    init.reconfigure(web__listen=f"127.0.0.1:{web_port}")
    with held(web_port):
        refused = init.action("restart")
    assert refused.returncode == 1
    assert in_use_line(init.config_file, "web", web_port) in refused.stderr.splitlines(), \
        refused.stderr
    assert probe(init.pidfile) == (RUNNING, pid)
    assert init.finger(b"alice\r\n") == b"Happy and well\r\n"
    # Once the address is free, the same restart goes through, and the new daemon serves it.
    assert init.action("restart").returncode == 0
    assert probe(init.pidfile)[1] != pid
    wait_until(lambda: can_connect(web_port), what="the web directory")


def test_stop_leaves_no_directory_made_for_the_setter_socket(init, public_dir):
    run = os.path.join(public_dir, "run")
    socket_path = os.path.join(run, "fingerd", "setter.sock")
    init.reconfigure(setter__socket=socket_path)
    assert init.action("start").returncode == 0
    assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)
    assert init.action("stop").returncode == 0
    assert not os.path.lexists(run)


@pytest.mark.parametrize("action, status, says", [
    ("stop", 0, ""),
    ("status", 4, "fingerd is not installed\n"),
    ("start", 5, ""), ("restart", 5, ""), ("reload", 5, ""), ("force-reload", 5, ""),
])
def test_without_fingerd_installed_the_actions_give_lsb_s_statuses(public_dir, action,
                                                                   status, says):
    """A package removed but not purged leaves the script: stop succeeds, status says 4
    (unknown), and the others 5 (not installed), as LSB says."""
    script = os.path.join(public_dir, "fingerd.init")
    shutil.copy(os.path.join(ROOT, "init", "fingerd"), script)
    missing = os.path.join(public_dir, "no-such-program")
    result = subprocess.run([script, action], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "FINGERD": missing,
                                 "FINGERD_CTL": missing,
                                 "FINGERD_DEFAULTS": os.path.join(public_dir, "none")})
    assert (result.returncode, result.stdout) == (status, says), result.stderr
    if status == 5:
        assert "fingerd or fingerd-ctl not found" in result.stderr
