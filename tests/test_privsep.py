"""Privilege separation on the real ports 79 and 1079 (docs/guide.md, "Processes and
signals")."""

import ctypes
import os
import pwd
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.support.markers import needs_root, needs_tool
from tests.support.net import skip_unless_free
from tests.support.polling import wait_until
from tests.support.procfs import bound_sockets, proc_status, socket_inodes, worker_of

pytestmark = needs_root

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def real(make_daemon, ports):
    """A daemon as root on 127.0.0.1:79 and 127.0.0.1:1079, with its web directory and
    metrics on free ports, worker as nobody."""
    for port in (79, 1079):
        skip_unless_free("127.0.0.1", port)
    d = make_daemon().listen("finger", "127.0.0.1:79").listen("setter", "127.0.0.1:1079")
    return d.listen("web", f"127.0.0.1:{ports.take()}").start()


def ids(status, field):
    return [int(x) for x in status[field].split()]


def test_worker_runs_with_every_id_of_the_configured_user(real):
    status = proc_status(worker_of(real.proc.pid))
    assert ids(status, "Uid") == [NOBODY.pw_uid] * 4
    assert ids(status, "Gid") == [NOBODY.pw_gid] * 4
    assert status["Groups"].strip() == ""
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0


def test_supplementary_groups_the_daemon_was_started_with_never_reach_the_worker(
        make_daemon):
    d = make_daemon().start(preexec=lambda: os.setgroups([0, 42]))
    assert proc_status(d.proc.pid)["Groups"].split() == ["0", "42"]
    status = proc_status(worker_of(d.proc.pid))
    assert status["Groups"].strip() == ""
    assert ids(status, "Gid") == [NOBODY.pw_gid] * 4


def confinement(pid):
    """What /proc says of the confinement of each of ``pid``'s threads."""
    fields = ("NoNewPrivs", "Seccomp", "CapBnd", "CapAmb")
    return {tuple(proc_status(f"{pid}/task/{tid}")[f].strip() for f in fields)
            for tid in os.listdir(f"/proc/{pid}/task")}


CONFINED = ("1", "2", "0" * 16, "0" * 16)


def test_every_thread_of_the_worker_is_confined(real):
    worker = worker_of(real.proc.pid)
    assert len(os.listdir(f"/proc/{worker}/task")) > 1
    assert confinement(worker) == {CONFINED}
    assert real.finger(b"alice\r\n") == b"Happy and well\r\n"  # threads answer
    assert "not applied" not in real.log()


def drop_setpcap():
    """In the daemon's child before exec: as a unit whose bounding set lacks CAP_SETPCAP."""
    assert ctypes.CDLL(None).prctl(24, 8, 0, 0, 0) == 0  # PR_CAPBSET_DROP, CAP_SETPCAP


def test_a_layer_the_kernel_refuses_is_logged_once_and_the_others_hold(make_daemon):
    d = make_daemon().start(preexec=drop_setpcap)
    first = worker_of(d.proc.pid)
    seen = confinement(first)
    nnp, seccomp, bounding, _ = seen.pop()
    assert not seen and (nnp, seccomp) == ("1", "2") and int(bounding, 16) != 0
    os.kill(first, signal.SIGKILL)
    second = worker_of(d.proc.pid, other_than=first)
    wait_until(lambda: d.ready(), what="the second worker to serve")
    assert confinement(second) == {(nnp, seccomp, bounding, "0" * 16)}
    assert d.log().count("empty capability bounding set not applied") == 1
    assert "lacks CAP_SETPCAP" in d.log()


def test_parent_is_the_only_root_process(real):
    assert ids(proc_status(real.proc.pid), "Uid") == [0] * 4
    worker = worker_of(real.proc.pid)
    assert 0 not in ids(proc_status(worker), "Uid")


def socket_inode(local_port, remote_port):
    """The inode of the server's end of an established loopback connection (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if local.endswith(f":{local_port:04X}") and remote.endswith(f":{remote_port:04X}") \
                    and state == "01" and inode != "0":
                return inode
    return None


def test_the_daemon_listens_where_it_is_configured_to_and_nowhere_else(real):
    configured = {("tcp", "127.0.0.1", port)
                  for port in (79, 1079, real.metrics_port, real.web_port)}
    assert real.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert bound_sockets(real.proc.pid) == configured
    assert bound_sockets(worker_of(real.proc.pid)) == configured


@needs_tool("strace", "strace")
def test_answering_queries_opens_no_socket_and_connects_nowhere(make_daemon, public_dir):
    """No ident lookup of the client, no name lookup, no connection anywhere: the worker
    only accepts, reads and sends, as strace sees every thread of it do."""
    d = make_daemon(finger__list_users="yes").start()
    worker = worker_of(d.proc.pid)
    threads = os.listdir(f"/proc/{worker}/task")
    trace = os.path.join(public_dir, "trace")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=socket,connect,accept4",
                               "-o", trace, "-p", str(worker)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: all(proc_status(f"{worker}/task/{tid}")["TracerPid"] != "0"
                               for tid in threads), what="strace to attach to every thread")
        queries = [b"alice\r\n", b"/W bob\r\n", b"\r\n", b"nobody-here\r\n",
                   b"alice@example.org\r\n"]
        for query in queries:
            assert d.finger(query).endswith(b"\r\n")
        assert d.metric("fingerd_users") == 2  # a scrape, on the metrics endpoint
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    with open(trace) as f:
        calls = [line.split(None, 1)[1] for line in f.read().splitlines()]
    assert sum(call.startswith("accept4(") and "= -1" not in call
               for call in calls) >= len(queries) + 1, calls
    assert not [call for call in calls if call.startswith(("socket(", "connect("))], calls


@pytest.mark.parametrize("service", ["finger", "setter", "metrics", "web"])
def test_accepted_connections_are_held_by_the_worker_not_the_parent(real, service):
    port = getattr(real, f"{service}_port")
    worker = worker_of(real.proc.pid)
    with socket.create_connection(("127.0.0.1", port)) as client:
        inode = wait_until(lambda: socket_inode(port, client.getsockname()[1]),
                           what="the connection to be accepted")
        assert int(inode) in socket_inodes(worker)
        assert int(inode) not in socket_inodes(real.proc.pid)


class Hammer(threading.Thread):
    """Queries port 79 in a loop, bounded in count and time, recording what happens."""

    def __init__(self, seconds=20.0, count=20000):
        super().__init__(daemon=True)
        self.deadline = time.monotonic() + seconds
        self.count = count
        self.stop = threading.Event()
        self.refused = 0
        self.answered = 0
        self.cut = 0

    def run(self):
        for _ in range(self.count):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                return
            try:
                with socket.create_connection(("127.0.0.1", 79), timeout=5) as s:
                    s.sendall(b"alice\r\n")
                    reply = s.recv(100)
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError:
                reply = b""
            if reply.startswith(b"Set before the kill"):
                self.answered += 1
            else:
                self.cut += 1


def test_killed_worker_is_replaced_with_no_refused_connection(real):
    assert real.setter(b"alice\r\nSet before the kill\r\n") == b"OK\r\n"
    first = worker_of(real.proc.pid)
    hammer = Hammer()
    hammer.start()
    try:
        wait_until(lambda: hammer.answered >= 50, what="queries before the kill")
        os.kill(first, signal.SIGKILL)
        second = worker_of(real.proc.pid, other_than=first)
        answered = hammer.answered
        wait_until(lambda: hammer.answered >= answered + 50, what="queries after the kill")
    finally:
        hammer.stop.set()
        hammer.join(30)
    assert hammer.refused == 0
    assert real.finger(b"alice\r\n") == b"Set before the kill\r\n"
    status = proc_status(second)
    assert ids(status, "Uid") == [NOBODY.pw_uid] * 4
    assert confinement(second) == {CONFINED}
    assert real.metric("fingerd_worker_restarts_total") == 1
    assert "killed by SIGKILL" in real.log()


def test_starting_as_nobody_warns_once_and_names_the_account_to_create(real):
    wait_until(lambda: "give fingerd an account of its own" in real.log(), what="the warning")
    assert real.log().count("give fingerd an account of its own") == 1
    assert "[fingerd] user = nobody: every other service running as it can stop or kill " \
        "the worker" in real.log()
    assert "useradd --system --user-group" in real.log()


def test_an_account_of_its_own_is_not_warned_about(make_daemon):
    d = make_daemon(fingerd__user="daemon").start()
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert "give fingerd an account of its own" not in d.log()
