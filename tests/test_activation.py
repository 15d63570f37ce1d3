"""Sockets from systemd (CONTRACT section 12): fingerd started by systemd-socket-activate
as systemd starts it, serving the sockets handed over, keeping them across worker
restarts and reloads, refusing what it cannot serve; and READY=1 over NOTIFY_SOCKET."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from fingerd.process.parent.activation import (
    NO_HANDOVER,
    ROLES,
    ActivationError,
    listed,
    take,
)
from tests.support import ROOT
from tests.support.children import as_nobody
from tests.support.markers import needs_ipv6, needs_root, needs_tool
from tests.support.net import answer_of, can_connect, exchange
from tests.support.polling import wait_until
from tests.support.procfs import ended, socket_inodes, worker_of

ACTIVATE = "systemd-socket-activate"


def needs_activate(test):
    """systemd-socket-activate to hand the sockets over, and ss to see them listen."""
    return needs_tool(ACTIVATE, "systemd")(needs_tool("ss", "iproute2")(test))


#: The daemon's configured backlog, told apart from the one systemd-socket-activate
#: listens with (SOMAXCONN): a handed-over socket must keep the latter.
BACKLOG = 64
#: Runs fingerd (the rest of its command line) with one descriptor 3 made as systemd
#: would not: ``KIND`` is ``file``, ``bound`` (a TCP socket not listening),
#: ``listening``, or ``held`` (the one at ``PORT``, inherited: systemd's own);
#: ``PID`` is LISTEN_PID (``self``: the pid fingerd will have).
LAUNCHER = """import os, socket, sys
kind, pid, names = sys.argv[1:4]
if kind == "file":
    fd = os.open(os.devnull, os.O_RDONLY)
elif kind == "held":
    fd = int(sys.argv[4])
else:
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(sys.argv[4])))
    if kind == "listening":
        sock.listen()
    fd = sock.detach()
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()) if pid == "self" else pid, LISTEN_FDS="1",
                  LISTEN_FDNAMES=names)
os.execv(sys.argv[5], sys.argv[5:])
"""


def activate(*sockets, datagram=False):
    """systemd-socket-activate's command line handing over ``sockets``, each ``(address,
    name)``; it runs what follows once a first client comes, as systemd does."""
    argv = [shutil.which(ACTIVATE) or ACTIVATE, *(["--datagram"] if datagram else [])]
    for address, _ in sockets:
        argv += ["--listen", address]
    return [*argv, "--fdname=" + ":".join(name for _, name in sockets), "--"]


def launch(kind, pid="self", names="finger", port=0):
    return [sys.executable, "-c", LAUNCHER, kind, pid, names, str(port)]


def listening_inode(pid, port):
    """The inode of the socket listening on 127.0.0.1:``port`` (/proc/net/tcp), held by
    process ``pid``."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":
                inode = int(fields[9])
                assert inode in socket_inodes(pid)
                return inode
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def listeners_on(port, protocol="t"):
    """``ss``'s lines for the sockets listening on TCP (``u``: bound to UDP) ``port``."""
    return subprocess.run(["ss", f"-l{protocol}nH", f"sport = :{port}"], capture_output=True,
                          text=True, timeout=10, check=True).stdout.splitlines()


def backlog_of(port):
    """The backlog of the socket listening on TCP ``port``, as ss shows it (Send-Q)."""
    return int(listeners_on(port)[0].split()[2])


def start_activated(d, *sockets):
    """Start ``d`` under systemd-socket-activate with ``sockets`` (``(address, name)``
    each), once it listens on them: the first client then starts fingerd."""
    d.start(wait=False, wrapper=activate(*sockets))
    for address, _ in sockets:
        if ":" in address:
            port = int(address.rpartition(":")[2])
            wait_until(lambda: listeners_on(port), what=f"{ACTIVATE} to listen on {address}")
        else:
            wait_until(lambda: os.path.exists(address), what=f"{ACTIVATE}'s {address}")


def environment(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return [entry for entry in f.read().split(b"\0") if entry]


def failed_start(d):
    """fingerd's exit status and its reason, the one line it printed, once it has ended."""
    wait_until(lambda: d.proc.poll() is not None, timeout=20, what="fingerd to exit")
    lines = [line for line in d.log().splitlines() if line.startswith("fingerd: ")]
    assert len(lines) == 1 and "Traceback" not in d.log(), d.log()
    return d.proc.returncode, lines[0]


# The variables, read as systemd's sd_listen_fds reads them.

def no_pidfd():
    return None


def test_sockets_for_this_process_are_listed_by_name():
    environ = {"LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "finger:finger:web"}
    assert listed(environ, 42, no_pidfd) == [(3, "finger"), (4, "finger"), (5, "web")]


@pytest.mark.parametrize("environ", [
    {"LISTEN_PID": "41", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "finger"},
    {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "finger"},
    {"LISTEN_PID": "42", "LISTEN_PIDFDID": "7", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "finger"},
    {"LISTEN_PID": "42", "LISTEN_FDS": "0"},
])
def test_variables_for_another_process_or_no_socket_hand_over_nothing(environ):
    assert listed(environ, 42, lambda: 8) == []


def test_every_variable_is_removed_even_when_it_names_another_process():
    environ = {"LISTEN_PID": "1", "LISTEN_PIDFDID": "7", "LISTEN_FDS": "1",
               "LISTEN_FDNAMES": "finger", "PATH": "/usr/bin"}
    assert take(environ) == NO_HANDOVER
    assert environ == {"PATH": "/usr/bin"}


def test_listen_pidfdid_is_checked_where_pidfds_exist():
    environ = {"LISTEN_PID": "42", "LISTEN_PIDFDID": "8", "LISTEN_FDS": "1",
               "LISTEN_FDNAMES": "setter"}
    assert listed(environ, 42, lambda: 8) == [(3, "setter")]
    assert listed(environ, 42, no_pidfd) == [(3, "setter")]


@pytest.mark.parametrize("fds, names, reason", [
    ("2", "finger", "handed over 2 sockets (LISTEN_FDS=2) but named 1 "
                    "(LISTEN_FDNAMES='finger')"),
    ("1", "finger:setter", "handed over 1 socket (LISTEN_FDS=1) but named 2"),
    ("2", "finger:gopher", "socket 4 from systemd is named 'gopher' "
                           "(LISTEN_FDNAMES='finger:gopher'): fingerd serves finger, setter, "
                           "metrics, web; set FileDescriptorName= to one"),
    ("1", None, "handed over 1 socket with no names (no LISTEN_FDNAMES)"),
    ("x", "finger", "LISTEN_FDS='x': not a number of sockets"),
    ("²", "finger", "LISTEN_FDS='²': not a number of sockets"),
    # A newline in what the variables say would begin a second line of the log.
    ("1\nERROR forged", "finger", "LISTEN_FDS='1\\nERROR forged': not a number of sockets"),
    ("1", "finger\nERROR: forged", "handed over 1 socket (LISTEN_FDS=1) but named 2 "
                                   "(LISTEN_FDNAMES='finger\\nERROR: forged')"),
    ("1", "fing\ner", "socket 3 from systemd is named 'fing\\ner' "
                      "(LISTEN_FDNAMES='fing\\ner'): fingerd serves"),
])
def test_names_that_do_not_match_fail_with_a_line_naming_them(fds, names, reason):
    environ = {"LISTEN_PID": "42", "LISTEN_FDS": fds}
    if names is not None:
        environ["LISTEN_FDNAMES"] = names
    with pytest.raises(ActivationError) as raised:
        listed(environ, 42, no_pidfd)
    assert reason in str(raised.value) and "\n" not in str(raised.value)


# A real daemon under systemd-socket-activate.

@pytest.fixture
def finger_activated(make_daemon, ports):
    """Make a daemon with ``settings``, started by a first client on the one finger socket
    systemd-socket-activate hands over, and answering it: ``(daemon, that socket's port)``."""
    def make(**settings):
        d = make_daemon(**settings)
        handed = ports.take()
        start_activated(d, (f"127.0.0.1:{handed}", "finger"))
        assert exchange(handed, b"alice\r\n") == b"Happy and well\r\n"
        return d, handed
    return make


@needs_root
@needs_activate
def test_a_role_with_sockets_serves_on_them_and_binds_none_of_its_addresses(
        make_daemon, ports, public_dir):
    unix = os.path.join(public_dir, "setter.sock")
    d = make_daemon(fingerd__backlog=str(BACKLOG), setter__socket=unix)
    handed = [ports.take(), ports.take()]
    start_activated(d, *((f"127.0.0.1:{port}", "finger")
                                          for port in handed))
    # The first client starts fingerd, as systemd does, and is answered.
    for port in handed:
        assert exchange(port, b"alice\r\n") == b"Happy and well\r\n"
    assert not can_connect(d.finger_port), "the role's configured address is not bound"
    # The roles that received none bind their configuration: the setter (its Unix
    # socket too) and the metrics.
    assert d.ready() and os.path.exists(unix)
    assert d.setter(b"alice\r\nActivated\r\n") == b"OK\r\n"
    assert exchange(handed[1], b"alice\r\n") == b"Activated\r\n"
    # Taken as they are: listen() is not called again with the configured backlog.
    assert backlog_of(handed[0]) != BACKLOG and backlog_of(d.metrics_port) == BACKLOG
    assert f"finger on 127.0.0.1:{handed[0]} (from systemd), 127.0.0.1:{handed[1]} " \
           f"(from systemd), setter on 127.0.0.1:{d.setter_port}" in d.log()


@needs_root
@needs_activate
def test_metrics_and_web_serve_on_sockets_handed_over_and_bind_neither_address(make_daemon,
                                                                              ports):
    d = make_daemon().listen("web", f"127.0.0.1:{ports.take()}")
    metrics, web = ports.take(), ports.take()
    start_activated(d, (f"127.0.0.1:{metrics}", "metrics"), (f"127.0.0.1:{web}", "web"))
    # The first scrape starts fingerd, as systemd does.
    scraped = exchange(metrics, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert scraped.startswith(b"HTTP/1.0 200 OK\r\n") and b"\nfingerd_users " in scraped, \
        scraped
    page = exchange(web, b"GET /users/alice HTTP/1.0\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200 OK\r\n") and b"Happy and well" in page, page
    assert not can_connect(d.metrics_port) and not can_connect(d.web_port)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    # Where each is served, as for finger and the setter: metrics too.
    assert f", metrics on 127.0.0.1:{metrics} (from systemd), web on 127.0.0.1:{web} " \
           f"(from systemd)" in d.log()


@needs_root
@needs_activate
def test_the_variables_are_gone_from_the_environment_of_parent_and_worker(finger_activated):
    d, _ = finger_activated()
    for pid in (d.proc.pid, worker_of(d.proc.pid)):
        names = [entry.partition(b"=")[0] for entry in environment(pid)]
        assert b"PATH" in names
        assert not [name for name in names if name.startswith(b"LISTEN_")], names


@needs_root
@needs_activate
@needs_ipv6
def test_a_dual_stack_socket_stays_ipv6_and_serves_both_families(make_daemon, ports):
    d = make_daemon()
    port = ports.take()
    start_activated(d, (f"[::]:{port}", "finger"))
    assert exchange(port, b"alice\r\n", host="::1") == b"Happy and well\r\n"
    assert exchange(port, b"alice\r\n") == b"Happy and well\r\n"
    assert f"finger on [::]:{port} (from systemd)" in d.log()


@needs_root
@needs_activate
def test_a_worker_killed_is_replaced_on_the_same_socket_refusing_no_one(finger_activated):
    d, handed = finger_activated()
    inode = listening_inode(d.proc.pid, handed)
    old = worker_of(d.proc.pid)
    os.kill(old, signal.SIGKILL)
    # A connection the dying worker took with it is lost to SIGKILL; the test's come once
    # it holds the socket no more (a zombie holds none), while no worker runs.
    wait_until(lambda: ended(old), what="the killed worker to end")
    # Clients that come while no worker runs wait in the backlog, none refused.
    clients = [socket.create_connection(("127.0.0.1", handed), timeout=10) for _ in range(5)]
    for client in clients:
        client.sendall(b"alice\r\n")
    assert [answer_of(client) for client in clients] == [b"Happy and well\r\n"] * 5
    new = worker_of(d.proc.pid, other_than=old)
    assert inode in socket_inodes(new) and listening_inode(d.proc.pid, handed) == inode


@needs_root
@needs_activate
def test_a_reload_keeps_the_sockets_handed_over(finger_activated, ports):
    d, handed = finger_activated(fingerd__backlog=str(BACKLOG))
    moved, metrics = ports.take(), ports.take()
    inode, backlog = listening_inode(d.proc.pid, handed), backlog_of(handed)
    d.reconfigure(finger__listen=f"127.0.0.1:{moved}", metrics__listen=f"127.0.0.1:{metrics}",
                  fingerd__backlog=str(BACKLOG + 1))
    result = d.ctl("reload")
    assert result.returncode == 0 and "applied" in result.stdout, result.stdout + result.stderr
    assert exchange(handed, b"alice\r\n") == b"Happy and well\r\n"
    assert listening_inode(d.proc.pid, handed) == inode and backlog_of(handed) == backlog
    assert inode in socket_inodes(worker_of(d.proc.pid))
    assert not can_connect(moved), "a reload binds none of the role's addresses either"
    # The role without sockets moves, as on any reload.
    assert exchange(metrics, b"GET /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
    assert not can_connect(d.metrics_port)


@needs_root
@needs_activate
def test_get_says_it_asked_the_configured_address_not_the_socket_handed_over(
        finger_activated):
    """fingerd-ctl get asks [finger] listen, which an activated daemon does not bind: it
    says so, rather than only sending the operator to a log that holds nothing."""
    d, _ = finger_activated()
    got = d.ctl("get", "alice")
    lines = got.stderr.splitlines()
    assert (got.returncode, got.stdout, len(lines)) == (1, "", 2), got.stderr
    assert lines[0] == (f"fingerd-ctl: cannot reach the finger service at its configured "
                        f"address 127.0.0.1:{d.finger_port}: Connection refused")
    assert lines[1].startswith(f"fingerd-ctl: fingerd is running (pid {d.proc.pid}) but not "
                               "answering there: fingerd-ctl uses the configured addresses, "
                               "never sockets systemd handed over (socket activation)")


@needs_root
@needs_activate
def test_a_tcp_socket_for_the_setter_leaves_its_unix_socket_to_fingerd(make_daemon, ports,
                                                                       public_dir):
    unix = os.path.join(public_dir, "setter.sock")
    d = make_daemon(setter__socket=unix)
    handed = ports.take()
    start_activated(d, (f"127.0.0.1:{handed}", "setter"))
    assert exchange(handed, b"alice\r\nOver TCP\r\n") == b"OK\r\n"
    assert not can_connect(d.setter_port), "the setter's listen address is not bound"
    # fingerd-ctl set connects to [setter] socket, which fingerd still binds.
    result = d.ctl("set", "alice", "Over the Unix socket")
    assert result.returncode == 0 and os.path.exists(unix), result.stdout + result.stderr
    assert d.finger(b"alice\r\n") == b"Over the Unix socket\r\n"


@needs_root
@needs_activate
def test_a_unix_socket_for_the_setter_stands_for_its_socket(make_daemon, ports, public_dir):
    handed, configured = (os.path.join(public_dir, name) for name in ("handed.sock",
                                                                      "setter.sock"))
    d = make_daemon(setter__socket=configured)
    start_activated(d, (handed, "setter"))
    os.chmod(handed, 0o666)

    def set_alice(status):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(handed)
            s.sendall(b"alice\r\n" + status + b"\r\n")
            return answer_of(s)

    assert set_alice(b"Set by root") == b"OK\r\n"
    # Told apart by SO_PEERCRED: nobody may not set alice's status (policy own).
    refused = as_nobody(lambda: set_alice(b"Set by nobody").decode())
    assert refused.error is None and not refused.value.startswith("OK"), refused
    assert d.finger(b"alice\r\n") == b"Set by root\r\n"
    assert not os.path.exists(configured) and not can_connect(d.setter_port)


@needs_root
def test_a_restart_refuses_no_connection_while_systemd_holds_the_socket(make_daemon, ports):
    """As systemd across a restart of the service: the socket outlives fingerd, and a
    client that comes while none runs waits in its backlog for the next one."""
    d = make_daemon()
    port = ports.take()
    with socket.socket() as held, open(d.log_file, "ab") as log:
        held.bind(("127.0.0.1", port))
        held.listen()

        def fingerd():
            return subprocess.Popen(
                [*launch("held", port=held.fileno()), sys.executable, "-m", "fingerd", "-n",
                 "-c", d.config_file], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, pass_fds=[held.fileno()])

        def stop(proc):
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(20)

        first = fingerd()
        try:
            assert exchange(port, b"alice\r\n") == b"Happy and well\r\n"
        finally:
            assert stop(first) == 0
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        waiting.sendall(b"alice\r\n")
        second = fingerd()
        try:
            assert answer_of(waiting) == b"Happy and well\r\n"
        finally:
            assert stop(second) == 0
    assert "Traceback" not in d.log(), d.log()


@needs_root
@needs_activate
def test_an_abstract_unix_socket_for_the_setter_is_named_as_ss_names_it(make_daemon):
    """The log says ``@NAME``, as ss(8) does, where the name's first byte is a NUL."""
    name = f"fingerd-setter-{uuid.uuid4().hex}"
    d = make_daemon()
    d.start(wait=False, wrapper=activate((f"@{name}", "setter")))

    def set_alice():
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect("\0" + name)
                s.sendall(b"alice\r\nAbstract\r\n")
                return answer_of(s)
        except OSError:  # not listening yet
            return None

    assert wait_until(set_alice, timeout=30, what="the setter on the abstract socket") == \
        b"OK\r\n"
    assert f"setter on @{name} (from systemd)" in d.log()
    assert "\0" not in d.log()


@needs_root
@needs_activate
def test_listen_pid_of_another_process_is_ignored(make_daemon, ports):
    d = make_daemon()
    d.start(wrapper=launch("listening", pid="1", port=ports.take()))
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert not [entry for entry in environment(worker_of(d.proc.pid))
                if entry.startswith(b"LISTEN_")]


def first_client(argv, port, path):
    """What makes systemd-socket-activate run fingerd: a first client on its socket."""
    if ACTIVATE not in argv[0]:
        return
    if path in argv:
        wait_until(lambda: os.path.exists(path), what=f"{ACTIVATE}'s socket")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return
    datagram = "--datagram" in argv
    wait_until(lambda: listeners_on(port, "u" if datagram else "t"), what=f"{ACTIVATE}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM) \
            as s:
        s.connect(("127.0.0.1", port))
        if datagram:
            s.send(b"alice\r\n")


@needs_root
@needs_activate
@pytest.mark.parametrize("wrapper, reason", [
    (lambda port, path: activate((f"127.0.0.1:{port}", "fingr")),
     "fingerd: socket 3 from systemd is named 'fingr' (LISTEN_FDNAMES='fingr'): fingerd "
     "serves finger, setter, metrics, web; set FileDescriptorName= to one"),
    (lambda port, path: activate((f"127.0.0.1:{port}", "finger"), datagram=True),
     "fingerd: socket 3 from systemd (finger): not a stream socket (ListenStream=)"),
    (lambda port, path: activate((path, "finger")),
     "fingerd: socket 3 from systemd (finger): a Unix-domain socket, which only the setter "
     "serves on"),
    (lambda port, path: launch("bound", port=port),
     "fingerd: socket 3 from systemd (finger): not listening"),
    (lambda port, path: launch("file"),
     "fingerd: socket 3 from systemd (finger): not a socket: Socket operation on non-socket"),
    (lambda port, path: launch("listening", names="finger:setter", port=port),
     "fingerd: systemd handed over 1 socket (LISTEN_FDS=1) but named 2 "
     "(LISTEN_FDNAMES='finger:setter')"),
], ids=["unknown-name", "datagram", "unix-for-finger", "not-listening", "not-a-socket",
        "count"])
def test_what_cannot_be_served_fails_the_start_with_one_line(make_daemon, ports, public_dir,
                                                              wrapper, reason):
    d = make_daemon()
    port, path = ports.take(), os.path.join(public_dir, "finger.sock")
    d.start(wait=False, wrapper=wrapper(port, path))
    first_client(d.proc.args, port, path)
    # EX_CONFIG: systemd does not restart it (fingerd.service's RestartPreventExitStatus).
    assert failed_start(d) == (78, reason)
    assert not can_connect(d.finger_port) and not can_connect(d.setter_port)


@needs_root
@needs_activate
def test_a_setter_socket_on_an_address_not_loopback_fails_the_start(make_daemon, ports,
                                                                    public_dir):
    # As [setter] listen refuses it: ListenStream=1079 alone listens on every address.
    d = make_daemon()
    port = ports.take()
    d.start(wait=False, wrapper=activate((f"0.0.0.0:{port}", "setter")))
    first_client(d.proc.args, port, None)
    assert failed_start(d) == (
        78, f"fingerd: socket 3 from systemd (setter): listens on 0.0.0.0:{port}, not a "
            f"loopback address; the setter must stay local: set ListenStream= to "
            f"127.0.0.1:PORT or [::1]:PORT")
    assert not can_connect(d.finger_port) and not can_connect(d.setter_port)


# Telling systemd.

@needs_root
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_systemd_hears_ready_once_the_daemon_answers_then_reloading_and_stopping(
        make_daemon, tmp_path, abstract):
    name = f"@fingerd-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name[1:] if abstract else name)
        systemd.settimeout(30)
        d = make_daemon()
        d.start(wait=False, env={"NOTIFY_SOCKET": name})
        assert systemd.recv(4096) == b"READY=1"
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n", "answers by then"
        d.signal(signal.SIGHUP)
        assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", systemd.recv(4096))
        assert systemd.recv(4096) == b"READY=1"
        d.signal(signal.SIGTERM)
        assert systemd.recv(4096) == b"STOPPING=1"
        assert d.stop() == 0


# The units in init/.

INIT = os.path.join(ROOT, "init")
needs_analyze = needs_tool("systemd-analyze", "systemd")


def unit_settings(name):
    """The ``Key=value`` lines of ``init/NAME``, a list of values per key."""
    found = {}
    with open(os.path.join(INIT, name)) as f:
        for line in f:
            key, equals, value = line.strip().partition("=")
            if equals and not key.startswith("#"):
                found.setdefault(key, []).append(value)
    return found


def installed_units(directory):
    """The service and its socket units in ``directory``, the service's commands named by
    absolute paths as a package installs them; their names."""
    with open(os.path.join(INIT, "fingerd.service")) as f:
        text = f.read()
    text = re.sub(r"^ExecStart=fingerd ", f"ExecStart={sys.executable} -m fingerd ", text,
                  flags=re.M)
    text = re.sub(r"^ExecReload=fingerd-ctl ", f"ExecReload={sys.executable} -m fingerd.ctl ",
                  text, flags=re.M)
    (directory / "fingerd.service").write_text(text)
    names = ["fingerd.service"]
    for role in ROLES:
        shutil.copy(os.path.join(INIT, f"fingerd-{role}.socket"), directory)
        names.append(f"fingerd-{role}.socket")
    return names


def exposure(unit, cwd):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                             str(unit)], capture_output=True, text=True, timeout=120, cwd=cwd)
    found = re.search(r"Overall exposure level for fingerd\.service: (\d+\.\d+)",
                      result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@pytest.mark.parametrize("role", ROLES)
def test_a_socket_unit_a_role_each_named_for_it_and_starting_the_service(role):
    unit = unit_settings(f"fingerd-{role}.socket")
    assert unit["FileDescriptorName"] == [role] and unit["Service"] == ["fingerd.service"]
    assert unit["ListenStream"] and unit["WantedBy"] == ["sockets.target"]
    assert "Accept" not in unit, "one service for every connection, not one each"


def test_the_finger_socket_listens_on_ipv4_and_ipv6_apart_as_fingerd_binds():
    unit = unit_settings("fingerd-finger.socket")
    assert unit["ListenStream"] == ["0.0.0.0:79", "[::]:79"]
    assert unit["BindIPv6Only"] == ["ipv6-only"]
    assert unit_settings("fingerd-setter.socket")["ListenStream"] == ["127.0.0.1:1079"]
    assert unit_settings("fingerd-metrics.socket")["ListenStream"] == ["127.0.0.1:9179"]
    assert unit_settings("fingerd.service")["Type"] == ["notify"]


@needs_analyze
def test_systemd_analyze_verifies_the_socket_units_with_the_service(tmp_path):
    names = installed_units(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


@needs_analyze
def test_with_the_sockets_drop_in_the_service_scores_lower_without_net_bind_service(tmp_path):
    installed_units(tmp_path)
    alone = exposure(tmp_path / "fingerd.service", tmp_path)
    (tmp_path / "fingerd.service.d").mkdir()
    shutil.copy(os.path.join(INIT, "fingerd-sockets.conf"),
                tmp_path / "fingerd.service.d" / "sockets.conf")
    assert unit_settings("fingerd-sockets.conf")["CapabilityBoundingSet"] == [
        "~CAP_NET_BIND_SERVICE"]
    assert exposure(tmp_path / "fingerd.service", tmp_path) < alone <= 2.5


def test_a_setter_socket_systemd_holds_in_the_runtime_directory_outlives_the_service():
    """fingerd(8) has ListenStream= name the path of [setter] socket, /run/fingerd/... in
    the package's configuration: the service's RuntimeDirectory=. systemd removes that
    directory at every stop and restart of the service unless told to keep it, taking
    with it the path of the socket its .socket unit still listens on (fingerd-ctl set
    then finds no such file, seen under systemd 257)."""
    unit = unit_settings("fingerd.service")
    assert unit["RuntimeDirectory"] == ["fingerd"]
    assert unit["RuntimeDirectoryPreserve"] == ["yes"]
