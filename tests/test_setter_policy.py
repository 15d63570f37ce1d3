"""The setter's policy with real accounts (CONTRACT section 6): who may set whose status.

The tests make their own accounts and group (``fdpol`` and a random tag, always
removed) and run clients as those accounts with setpriv, so that the kernel,
not the request, tells the daemon who is asking: over TCP on 127.0.0.1 and
::1, over the Unix socket, and through ``fingerd-ctl set``. OwnerLookup is
also driven directly, for an IPv4-mapped peer on a dual-stack socket and for
the /proc fallback.
"""

import errno
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import threading
from typing import NamedTuple

import pytest

from fingerd.config import ConfigError, load_config
from fingerd.process.parent.listeners import BindError, bind_unix
from fingerd.serving import peer_owner
from fingerd.serving.peer_owner import NoSockDiag, OwnerLookup
from fingerd.users.usersfile import parse_users
from tests.support import ROOT
from tests.support.children import holding_child
from tests.support.markers import needs_ipv6, needs_root, needs_tool
from tests.support.net import can_connect
from tests.support.polling import during, wait_until
from tests.support.set_floods import SETS_IN_A_FLOOD, refused_requests_flooding

pytestmark = [needs_root, needs_tool("setpriv", "util-linux")]

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
USERADD = shutil.which("useradd") or "/usr/sbin/useradd"
USERDEL = shutil.which("userdel") or "/usr/sbin/userdel"
GROUPADD = shutil.which("groupadd") or "/usr/sbin/groupadd"
GROUPDEL = shutil.which("groupdel") or "/usr/sbin/groupdel"

#: How long one client process may take, start to end.
CLIENT_SECONDS = 20

DENIED = b"ERROR permission denied\r\n"

#: A setter client: connects, sends argv[3], prints everything read until EOF.
#: Its end stays open until the server closes: the policy needs the client there.
SET_CLIENT = r"""
import socket, sys
kind, where, request = sys.argv[1], sys.argv[2], sys.argv[3].encode("utf-8")
if kind == "unix":
    s, address = socket.socket(socket.AF_UNIX), where
else:
    host, _, port = where.rpartition(":")
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    address = (host, int(port))
s.settimeout(10)
s.connect(address)
s.sendall(request)
data = b""
for _ in range(1000):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.buffer.write(data)
"""

#: Connects to argv[1]:argv[2], prints its own address, holds the connection until
#: its standard input is closed.
HOLD_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(s.getsockname()[0], s.getsockname()[1], flush=True)
sys.stdin.read()
"""


class Account(NamedTuple):
    name: str
    uid: int
    gid: int


class Accounts(NamedTuple):
    own: Account      # sets its own status
    other: Account    # tries to set own's
    admin: Account    # a supplementary member of ``group``
    group: str
    new_name: str     # a user name in no users file and no account
    python: str       # an interpreter these accounts can run


def _run_retried(argv, what):
    """Run an account tool, again while another process holds /etc/passwd's lock."""
    last = ""
    for _ in during(15, interval=0.1):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return
        last = result.stderr.strip()
        if "lock" not in last:
            break
    pytest.fail(f"{what} failed: {last}")


def _remove(tool, name):
    """Remove an account or group if it is there; retried while the files are locked."""
    lookup = "passwd" if tool == USERDEL else "group"
    for _ in during(15, interval=0.1):
        if subprocess.run(["getent", lookup, name], capture_output=True).returncode != 0:
            return
        subprocess.run([tool, name], capture_output=True, timeout=30)
    pytest.fail(f"could not remove {lookup} entry {name}")


def _pw(name):
    fields = subprocess.run(["getent", "passwd", name], capture_output=True, text=True,
                            check=True).stdout.split(":")
    return Account(name, int(fields[2]), int(fields[3]))


@pytest.fixture(scope="module")
def accounts():
    """Three accounts and a group made for this module, always removed."""
    tag = secrets.token_hex(4)
    group = f"fdpol{tag}g"
    names = {"own": f"fdpol{tag}u", "other": f"fdpol{tag}v", "admin": f"fdpol{tag}a"}
    users, groups = [], []
    try:
        groups.append(group)
        _run_retried([GROUPADD, group], f"groupadd {group}")
        for role, name in names.items():
            users.append(name)
            extra = ["--groups", group] if role == "admin" else []
            _run_retried([USERADD, "--no-create-home", "--home-dir", "/nonexistent",
                          "--shell", "/usr/sbin/nologin", "--no-user-group", *extra, name],
                         f"useradd {name}")
        own, other, admin = (_pw(names[r]) for r in ("own", "other", "admin"))
        made = Accounts(own, other, admin, group, f"fdpol{tag}n", sys.executable)
        yield made._replace(python=_client_python(made))
    finally:
        for name in users:
            _remove(USERDEL, name)
        for name in groups:
            _remove(GROUPDEL, name)


def _client_python(accounts):
    """sys.executable if these accounts can run it and import fingerd, else the system's."""
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        code, _out, _err = run_as(accounts.own, accounts._replace(python=python),
                                  "-c", "import fingerd.ctl")
        if code == 0:
            return python
    pytest.skip("no Python interpreter that an unprivileged account can run fingerd with")


def run_as(account, accounts, *args):
    """Run ``python ARGS`` as ``account`` (no supplementary groups): exit status, out, err."""
    proc = subprocess.Popen(
        [SETPRIV, "--reuid", str(account.uid), "--regid", str(account.gid), "--clear-groups",
         accounts.python, *args],
        cwd="/", env=_client_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=CLIENT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(CLIENT_SECONDS)
    return proc.returncode, out, err.decode("utf-8", "replace")


def _client_env():
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8"}


def set_as(account, accounts, where, name, status, kind="tcp"):
    """The setter's answer to ``account`` asking to set ``name``'s status."""
    code, out, err = run_as(account, accounts, "-c", SET_CLIENT, kind, where,
                            f"{name}\r\n{status}\r\n")
    assert code == 0, err
    return out


def users_bytes(accounts):
    return (f"{accounts.own.name}:Own at first\n{accounts.other.name}:Other at first\n"
            .encode())


def on_disk(d):
    with open(d.users_file, "rb") as f:
        return f.read()


def answer(d, name):
    return d.finger(f"{name}\r\n".encode())


def tcp(d):
    return f"127.0.0.1:{d.setter_port}"


def log_lines(d, *parts):
    return [line for line in d.log().splitlines() if all(p in line for p in parts)]


def lookups(d, method):
    return d.metric("fingerd_setter_owner_lookups_total", method=method)


def requests(d, outcome):
    return d.metric("fingerd_requests_total", service="setter", outcome=outcome)


# 1, 3: who may set what over TCP.


def test_own_policy_lets_a_user_set_their_own_status(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts)).start()
    own = accounts.own
    assert set_as(own, accounts, tcp(d), own.name, "Set by myself") == b"OK\r\n"
    assert answer(d, own.name) == b"Set by myself\r\n"
    assert parse_users(on_disk(d))[own.name] == "Set by myself"
    assert parse_users(on_disk(d))[accounts.other.name] == "Other at first"


def test_own_policy_denies_another_users_status_and_changes_nothing(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts)).start()
    own = accounts.own
    before_file = on_disk(d)
    before = {n: answer(d, n) for n in (own.name, accounts.new_name)}
    assert set_as(accounts.other, accounts, tcp(d), own.name, "Hijacked") == DENIED
    assert set_as(accounts.other, accounts, tcp(d), accounts.new_name, "Planted") == DENIED
    # Membership of a group counts only when admin_group names it.
    assert set_as(accounts.admin, accounts, tcp(d), own.name, "Hijacked") == DENIED
    assert on_disk(d) == before_file
    assert {n: answer(d, n) for n in before} == before
    assert answer(d, own.name) == b"Own at first\r\n"
    assert requests(d, "denied") == 3 and requests(d, "ok") == 0


def test_root_may_set_anyones_status(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts)).start()
    assert d.setter(f"{accounts.other.name}\r\nSet by root\r\n".encode()) == b"OK\r\n"
    assert answer(d, accounts.other.name) == b"Set by root\r\n"
    assert parse_users(on_disk(d))[accounts.other.name] == "Set by root"


def test_a_member_of_admin_group_may_set_another_users_status(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts), setter__admin_group=accounts.group).start()
    own = accounts.own
    assert set_as(accounts.admin, accounts, tcp(d), own.name, "Set by the admin") == b"OK\r\n"
    assert answer(d, own.name) == b"Set by the admin\r\n"
    assert parse_users(on_disk(d))[own.name] == "Set by the admin"
    before = on_disk(d)
    assert set_as(accounts.other, accounts, tcp(d), own.name, "Hijacked") == DENIED, \
        "a non-member is still denied"
    assert on_disk(d) == before and answer(d, own.name) == b"Set by the admin\r\n"


def test_any_policy_lets_anyone_set_another_users_status(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts), setter__policy="any").start()
    own = accounts.own
    assert set_as(accounts.other, accounts, tcp(d), own.name, "Set by other") == b"OK\r\n"
    assert answer(d, own.name) == b"Set by other\r\n"
    assert parse_users(on_disk(d))[own.name] == "Set by other"


# 2: the log and the metrics.


def test_every_set_is_logged_once_with_address_uid_and_login_and_counted(make_daemon,
                                                                        accounts):
    d = make_daemon(users=users_bytes(accounts)).start()
    own, other = accounts.own, accounts.other
    assert set_as(own, accounts, tcp(d), own.name, "Mine") == b"OK\r\n"
    assert set_as(other, accounts, tcp(d), own.name, "Yours") == DENIED
    assert d.setter(f"{other.name}\r\nFrom root\r\n".encode()) == b"OK\r\n"

    allowed = ("127.0.0.1", f"uid {own.uid}", f"{own.name})", f"status of {own.name}")
    denied = ("127.0.0.1", f"uid {other.uid}", f"{other.name})", f"status of {own.name}")
    by_root = ("127.0.0.1", "uid 0", "root)", f"status of {other.name}")
    wait_until(lambda: all(log_lines(d, *parts) for parts in (allowed, denied, by_root)),
               what="the three sets in the log")
    for parts, is_denied in ((allowed, False), (denied, True), (by_root, False)):
        lines = log_lines(d, *parts)
        assert len(lines) == 1, lines
        assert ("denied" in lines[0]) == is_denied, lines[0]
    assert requests(d, "denied") == 1
    assert requests(d, "ok") == 2
    assert lookups(d, "sock_diag") == 3, "one lookup per TCP connection"
    assert lookups(d, "proc") == 0


# 4: the Unix socket.


def stale_socket(path):
    """A socket file nobody listens on, as a daemon killed without cleanup leaves."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
        s.connect(path)


def test_unix_socket_replaces_a_stale_one_is_0666_and_applies_the_policy(make_daemon,
                                                                         accounts, public_dir):
    run = os.path.join(public_dir, "run")
    os.mkdir(run, 0o755)
    path = os.path.join(run, "setter.sock")
    stale_socket(path)
    d = make_daemon(users=users_bytes(accounts), setter__socket=path).start()
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666

    own, other = accounts.own, accounts.other
    # Served, so replaced: binding over the stale file would have failed.
    assert set_as(own, accounts, path, own.name, "Over unix", kind="unix") == b"OK\r\n"
    before = on_disk(d)
    assert set_as(other, accounts, path, own.name, "Hijacked", kind="unix") == DENIED
    assert on_disk(d) == before and parse_users(before)[own.name] == "Over unix"
    assert answer(d, own.name) == b"Over unix\r\n"
    assert lookups(d, "peercred") == 2 and lookups(d, "sock_diag") == 0
    wait_until(lambda: log_lines(d, "unix", f"uid {other.uid}", f"{other.name})", "denied"),
               what="the denial over the Unix socket in the log")

    assert d.stop() == 0
    assert not os.path.lexists(path), "the socket is removed at stop"


def _processes_with(text):
    """Pids of processes whose command line mentions ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture(params=["regular-file", "live-socket"])
def in_the_way(request, public_dir):
    """What sits at the socket path: a file of data, or a socket another process serves.
    Yields the path and a check that it was left as it was."""
    path = os.path.join(public_dir, "in-the-way")
    if request.param == "regular-file":
        with open(path, "wb") as f:
            f.write(b"precious\n")

        def untouched():
            with open(path, "rb") as f:
                return f.read() == b"precious\n"
        yield path, untouched
        return
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        # Room for every probe: fingerd's probe connect has no timeout (see below).
        other.listen(16)

        def untouched():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(path)
            return True
        yield path, untouched


def test_something_in_the_way_of_the_socket_fails_the_start_in_one_line(make_daemon,
                                                                        accounts, in_the_way):
    """A file in the way waits for the operator: EX_CONFIG, 78, which fingerd.service does
    not restart; a socket another process serves may be let go: 1, retried."""
    path, untouched = in_the_way
    status = 1 if stat.S_ISSOCK(os.lstat(path).st_mode) else 78
    d = make_daemon(users=users_bytes(accounts), setter__socket=path)
    proc = subprocess.Popen([sys.executable, "-m", "fingerd", "-n", "-c", d.config_file],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = err.decode().splitlines()
    assert proc.returncode == status, err
    assert len(lines) == 1 and lines[0].startswith(f"fingerd: cannot listen on {path} "), lines
    assert out == b""
    assert untouched(), "what is in the way is left alone"
    assert not os.path.exists(d.pidfile)
    assert not can_connect(d.finger_port) and not can_connect(d.setter_port)
    assert _processes_with(d.config_file) == [], "no process of that daemon is left"


def test_the_start_error_says_what_is_in_the_way(in_the_way):
    path, _untouched = in_the_way
    with pytest.raises(BindError) as failure:
        bind_unix(path, 5, "[setter] socket")
    assert str(failure.value).endswith(("a file that is not a socket is in the way",
                                        "another process serves it")), str(failure.value)


# 5: fingerd-ctl set as a normal user.


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_fingerd_ctl_set_as_a_normal_user(make_daemon, accounts, public_dir, transport):
    path = os.path.join(public_dir, "not-yet", "setter.sock")
    extra = {"setter__socket": path} if transport == "unix" else {}
    d = make_daemon(users=users_bytes(accounts), **extra).start()
    if transport == "unix":
        assert stat.S_ISSOCK(os.lstat(path).st_mode), "its directory is created"
    own, other = accounts.own, accounts.other
    ctl = ("-m", "fingerd.ctl", "-c", d.config_file, "set")

    code, _out, err = run_as(own, accounts, *ctl, "Set with ctl")
    assert code == 0, err
    assert answer(d, own.name) == b"Set with ctl\r\n"
    assert parse_users(on_disk(d))[own.name] == "Set with ctl"

    before = on_disk(d)
    code, _out, err = run_as(own, accounts, *ctl, other.name, "Hijacked")
    assert code == 1
    assert "refused: permission denied" in err, err
    assert on_disk(d) == before and answer(d, other.name) == b"Other at first\r\n"

    used, unused = ("peercred", "sock_diag") if transport == "unix" else ("sock_diag",
                                                                           "peercred")
    assert lookups(d, used) == 2 and lookups(d, unused) == 0


# 6: IPv6 and IPv4-mapped peers.


@needs_ipv6
def test_own_policy_over_an_ipv6_setter(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts))
    d.listen("setter", f"[::1]:{d.setter_port}").start()
    where = f"[::1]:{d.setter_port}"
    own, other = accounts.own, accounts.other
    assert set_as(own, accounts, where, own.name, "Over IPv6") == b"OK\r\n"
    assert set_as(other, accounts, where, own.name, "Hijacked") == DENIED
    assert answer(d, own.name) == b"Over IPv6\r\n"
    assert parse_users(on_disk(d))[own.name] == "Over IPv6"
    assert lookups(d, "sock_diag") == 2
    wait_until(lambda: log_lines(d, "::1", f"uid {own.uid}", f"{own.name})"),
               what="the IPv6 set in the log")


@pytest.mark.parametrize("address", ["[::]:1079", "0.0.0.0:1079"])
def test_a_wildcard_setter_address_is_refused_by_the_configuration(make_daemon, address):
    """Why a dual-stack setter is tested below on a bare socket, not through a daemon."""
    d = make_daemon(setter__listen=address)
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_config(d.config_file)


class HeldConnection(NamedTuple):
    server_end: socket.socket
    peer: tuple
    client_address: tuple


@pytest.fixture
def hold(accounts):
    """``hold(account, listen_host, connect_host)``: a connection whose client end a
    process of ``account`` holds open until the test ends (or ``release()``)."""
    procs, socks = [], []

    def make(account, listen_host, connect_host):
        family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
        listener = socket.socket(family)
        socks.append(listener)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((listen_host, 0))
        listener.listen(1)
        listener.settimeout(CLIENT_SECONDS)
        proc = subprocess.Popen(
            [SETPRIV, "--reuid", str(account.uid), "--regid", str(account.gid),
             "--clear-groups", accounts.python, "-c", HOLD_CLIENT, connect_host,
             str(listener.getsockname()[1])],
            cwd="/", env=_client_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        server_end, peer = listener.accept()
        socks.append(server_end)
        host, port = proc.stdout.readline().split()
        return HeldConnection(server_end, peer, (host.decode(), int(port))), proc

    yield make
    for proc in procs:
        _release(proc)
    for sock in socks:
        sock.close()


def _release(proc):
    """Let a holding client end, by closing its input; killed by pid if it lingers."""
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(CLIENT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(CLIENT_SECONDS)
    proc.stdout.close()


def ends(conn):
    return conn.peer, conn.server_end.getsockname()


@needs_ipv6
@pytest.mark.parametrize("connect_host", ["127.0.0.1", "::ffff:127.0.0.1"],
                         ids=["ipv4-client", "ipv6-client"])
def test_an_ipv4_mapped_peer_on_a_dual_stack_socket_is_told(hold, accounts, connect_host):
    conn, proc = hold(accounts.other, "::", connect_host)
    assert conn.peer[0] == "::ffff:127.0.0.1"
    assert conn.client_address == (connect_host, conn.peer[1]), "that client's connection"
    counted = []
    owners = OwnerLookup(counted.append)
    assert owners.of_tcp(*ends(conn)) == accounts.other.uid
    assert counted == ["sock_diag"]
    _release(proc)
    assert owners.of_tcp(*ends(conn)) is None, "a client gone is unknown, never root"


# 7: the /proc fallback.


@pytest.mark.parametrize("listen_host, connect_host", [
    ("127.0.0.1", "127.0.0.1"),
    pytest.param("::1", "::1", marks=needs_ipv6),
    pytest.param("::", "127.0.0.1", marks=needs_ipv6),
    pytest.param("::", "::ffff:127.0.0.1", marks=needs_ipv6),
], ids=["ipv4", "ipv6", "ipv4-mapped", "ipv4-mapped-ipv6-client"])
def test_without_sock_diag_the_owner_comes_from_proc(hold, accounts, monkeypatch, caplog,
                                                     listen_host, connect_host):
    asked = []

    def no_sock_diag(client, server):
        asked.append((client, server))
        raise NoSockDiag(errno.EOPNOTSUPP, "x")

    monkeypatch.setattr(peer_owner, "owner_by_sock_diag", no_sock_diag)
    conn, proc = hold(accounts.own, listen_host, connect_host)
    counted = []
    owners = OwnerLookup(counted.append)
    with caplog.at_level(logging.WARNING, logger=peer_owner.__name__):
        uids = [owners.of_tcp(*ends(conn)) for _ in range(3)]
    assert uids == [accounts.own.uid] * 3
    assert counted == ["proc"] * 3
    assert len(asked) == 1, "once the kernel says it has none, sock_diag is not asked again"
    warnings = [r for r in caplog.records if r.name == peer_owner.__name__]
    assert len(warnings) == 1 and "sock_diag" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    _release(proc)
    assert owners.of_tcp(*ends(conn)) is None, "a client gone is unknown, never root"


def test_a_live_socket_with_a_full_backlog_fails_the_start_without_hanging(public_dir):
    path = os.path.join(public_dir, "busy.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(0)
        waiting = []
        for _ in range(4):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            waiting.append(client)
            try:
                client.connect(path)
            except BlockingIOError:
                break
        outcome = []

        def start():
            try:
                bind_unix(path, 5, "[setter] socket")
            except BindError as exc:
                outcome.append(str(exc))

        probe = threading.Thread(target=start, daemon=True)
        probe.start()
        probe.join(5)
        for client in waiting:
            client.close()
    assert not probe.is_alive(), "the probe of a full backlog hung"
    assert outcome and outcome[0].endswith("another process serves it")


def test_one_account_setting_too_fast_is_told_so_and_others_are_not(make_daemon, accounts):
    d = make_daemon(users=users_bytes(accounts), setter__rate_limit="0.1").start()
    own, other = accounts.own, accounts.other
    assert set_as(own, accounts, tcp(d), own.name, "First") == b"OK\r\n"
    assert set_as(own, accounts, tcp(d), own.name, "Second") == b"ERROR too many requests\r\n"
    assert set_as(own, accounts, tcp(d), own.name, "Third") == b"ERROR too many requests\r\n"
    assert set_as(other, accounts, tcp(d), other.name, "Not rationed") == b"OK\r\n"
    assert answer(d, own.name) == b"First\r\n", "a refused set changes nothing"
    assert requests(d, "limited") == 2
    wait_until(lambda: log_lines(d, "sets faster than 0.1 a second"), what="the warning")
    assert len(log_lines(d, "sets faster than")) == 1, "logged once for a run of refusals"
    assert d.setter(f"{own.name}\r\nRoot is not rationed\r\n".encode()) == b"OK\r\n"



def test_invalid_requests_take_from_the_ration_so_a_flood_of_them_is_logged_once(
        make_daemon, accounts):
    """Each refused request is logged, so requests refused as invalid count against the
    account's ration too: beyond it they are answered ``too many requests``, logged once
    for the run, and cannot crowd another account's set out of the worker's share of the
    log (200 lines a second)."""
    d = make_daemon(users=users_bytes(accounts), setter__rate_limit="0.1").start()
    own, other = accounts.own, accounts.other
    assert set_as(own, accounts, tcp(d), "no such name!", "x") == \
        b"ERROR invalid user name\r\n"
    for n in range(5):
        assert set_as(own, accounts, tcp(d), f"bad name {n}", "x") == \
            b"ERROR too many requests\r\n"
    assert set_as(other, accounts, tcp(d), other.name, "Logged") == b"OK\r\n"
    wait_until(lambda: log_lines(d, "set the status of " + other.name), what="the set's line")
    assert len(log_lines(d, "refused request from")) == 1
    assert len(log_lines(d, "sets faster than 0.1 a second")) == 1
    assert (requests(d, "refused"), requests(d, "limited")) == (1, 5)

def test_no_flood_of_refused_requests_drops_the_record_of_a_set(make_daemon):
    """Without a rate limit each refused request is a line of the worker's, and the
    parent drops the worker's lines past 200 a second. A set's line is the parent's
    own, written as it writes the file, and no flood of the worker's crowds it out."""
    d = make_daemon().start()
    with refused_requests_flooding(d):
        for n in range(SETS_IN_A_FLOOD):
            assert d.setter(b"bob\r\nin the flood %d\r\n" % n) == b"OK\r\n"

    def sets():
        return log_lines(d, "setter: 127.0.0.1 (uid 0, root) set the status of bob")

    wait_until(lambda: len(sets()) >= SETS_IN_A_FLOOD, timeout=10,
               what=f"{SETS_IN_A_FLOOD} sets in the log: {len(sets())} so far")
    assert len(sets()) == SETS_IN_A_FLOOD


def test_under_any_policy_the_rate_limit_is_each_accounts_own(make_daemon, accounts):
    """``policy = any`` rations by the account the kernel names, as ``own`` does: one
    user's burst, from the same address, leaves another user's next set alone."""
    d = make_daemon(users=users_bytes(accounts), setter__policy="any",
                    setter__rate_limit="0.1").start()
    own, other = accounts.own, accounts.other
    assert set_as(own, accounts, tcp(d), own.name, "First") == b"OK\r\n"
    assert set_as(own, accounts, tcp(d), own.name, "Second") == b"ERROR too many requests\r\n"
    assert set_as(other, accounts, tcp(d), own.name, "Set by another") == b"OK\r\n", \
        "another account, from the same address: its own ration"
    assert answer(d, own.name) == b"Set by another\r\n"



#: Sockets the holding child keeps open until it is killed.
_held = []


#: The bound on one account's connections to the setter: ``max_per_source`` (2 here) where
#: it is below half the setter's share, else half the share (4 of 64 // 8, where
#: ``max_per_source`` is 32, its default, and the share would be one account's whole).
BOUNDS = {"max_per_source": ({"fingerd__max_per_source": "2"}, 2),
          "half_the_share": ({"fingerd__max_connections": "64"}, 4)}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("bound", BOUNDS)
def test_one_account_holding_connections_shuts_no_other_out(make_daemon, accounts, public_dir,
                                                            transport, bound):
    """``max_per_source`` counts a setter's client by the account the kernel names: every
    local client has a loopback address (or none, on the Unix socket), so counted by
    address one account's silent connections shut every other out, root's included.
    Nor may one account hold more than half the setter's share, whatever
    ``max_per_source`` allows."""
    socket_path = os.path.join(public_dir, "setter.sock")
    settings, most = BOUNDS[bound]
    d = make_daemon(setter__socket=socket_path, **settings).start()

    def hold():
        "abc".encode("idna")  # the codec, imported while its module is readable
        os.setgroups([])
        os.setresgid(accounts.own.gid, accounts.own.gid, accounts.own.gid)
        os.setresuid(accounts.own.uid, accounts.own.uid, accounts.own.uid)
        for _ in range(most + 1):
            if transport == "unix":
                s = socket.socket(socket.AF_UNIX)
                s.connect(socket_path)
            else:
                s = socket.create_connection(("127.0.0.1", d.setter_port), 10)
            _held.append(s)
        return len(_held)

    with holding_child(hold) as held:
        assert held == most + 1
        wait_until(lambda: d.metric("fingerd_connections_rejected_total",
                                    reason="per_source") == 1,
                   what="the account's connection beyond its bound told busy")
        where = tcp(d) if transport == "tcp" else socket_path
        assert set_as(accounts.other, accounts, where, accounts.other.name, "Not shut out",
                      kind=transport) == b"OK\r\n"
        assert d.setter(f"{accounts.own.name}\r\nBy root\r\n".encode()) == b"OK\r\n"
