"""Forwarding to real finger servers on loopback addresses' port 79."""

import os
import socket
import subprocess
import threading
import time

import pytest

from tests.support import in_fingerd
from tests.support.daemon import run_first
from tests.support.markers import needs_root, needs_tool
from tests.support.net import exchange, skip_unless_free
from tests.support.polling import wait_until

pytestmark = needs_root


def on_host(daemon, host):
    """Move a daemon's finger service to HOST:79 before it starts."""
    skip_unless_free(host, 79)
    return daemon.listen("finger", f"{host}:79")


class FakeUpstream(threading.Thread):
    """A finger server on HOST:79 that answers every connection with ``reply``, or never."""

    def __init__(self, host, reply=None):
        super().__init__(daemon=True)
        skip_unless_free(host, 79)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 79))
        self.sock.listen(16)
        self.reply = reply
        self.received = []
        self.held = []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                self.received.append(conn.recv(1024))
                if self.reply is None:
                    self.held.append(conn)
                    continue
                conn.sendall(self.reply)
            except OSError:
                pass
            conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(10)
        for conn in self.held:
            conn.close()


@pytest.fixture
def upstreams():
    made = []

    def make(host, reply=None):
        upstream = FakeUpstream(host, reply)
        upstream.start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()


@pytest.fixture
def forwarder(make_daemon):
    return make_daemon(finger__forwarding="yes", finger__forward_timeout="2").start()


def test_forwards_to_a_second_fingerd(make_daemon, forwarder):
    on_host(make_daemon(users=b"alice:Upstream alice\n"), "127.0.0.2").start()
    assert forwarder.finger(b"alice@127.0.0.2\r\n") == b"Upstream alice\r\n"
    assert forwarder.finger(b"/W alice@127.0.0.2\r\n") == \
        b"Login: alice\r\nStatus: Upstream alice\r\n"
    assert forwarder.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert forwarder.metric("fingerd_requests_total", service="finger",
                            outcome="forwarded") == 2


def test_the_upstream_receives_the_query_without_its_host(forwarder, upstreams):
    upstream = upstreams("127.0.0.3", b"ok\r\n")
    assert forwarder.finger(b"/W bob@127.0.0.3\r\n") == b"ok\r\n"
    assert upstream.received == [b"/W bob\r\n"]


def test_the_upstream_receives_the_users_own_bytes(forwarder, upstreams):
    """``user@host`` is answered with what host answers for that user: a Latin-1 name is
    not sent re-encoded as UTF-8 (another user), nor a UTF-8 one encoded twice."""
    upstream = upstreams("127.0.0.3", b"ok\r\n")
    assert forwarder.finger(b"/W ren\xe9@127.0.0.3\r\n") == b"ok\r\n"
    assert forwarder.finger("jürgen@127.0.0.3\r\n".encode()) == b"ok\r\n"
    assert forwarder.finger(b"a\tb@127.0.0.3\r\n") == b"ok\r\n"
    assert upstream.received == [b"/W ren\xe9\r\n", b"j\xc3\xbcrgen\r\n", b"a\tb\r\n"]


def test_a_user_part_holding_a_control_character_is_answered_but_not_sent(forwarder,
                                                                        upstreams):
    """A bare CR would be the end of the line to some upstreams, a NUL the end of the
    name: the client would be answered for another user than it named."""
    upstream = upstreams("127.0.0.3", b"ok\r\n")
    for user in (b"a\rb", b"a\x00b", b"\x1b[2Ja", b"a\x7f"):
        assert forwarder.finger(user + b"@127.0.0.3\r\n") == \
            b"127.0.0.3: not asked, the user holds a control character\r\n", user
    assert upstream.received == []
    assert forwarder.metric("fingerd_requests_total", service="finger",
                            outcome="forward_failed") == 4


def test_more_than_one_hop_is_refused_and_nothing_is_asked(forwarder, upstreams):
    upstream = upstreams("127.0.0.3", b"ok\r\n")
    for query in (b"bob@127.0.0.3@127.0.0.3\r\n", b"a" + b"@127.0.0.3" * 50 + b"\r\n"):
        assert forwarder.finger(query) == b"Finger forwarding service denied\r\n"
    assert upstream.received == []


def test_hosts_outside_the_allow_list_are_refused(make_daemon, upstreams):
    d = make_daemon(finger__forwarding="yes", finger__forward_allow="Host-Two, 127.0.0.3")
    d.start()
    upstream = upstreams("127.0.0.3", b"allowed\r\n")
    assert d.finger(b"x@127.0.0.3\r\n") == b"allowed\r\n"
    assert d.finger(b"x@127.0.0.4\r\n") == b"Finger forwarding service denied\r\n"
    assert d.finger(b"x@127.1\r\n") == b"Finger forwarding service denied\r\n"
    assert len(upstream.received) == 1


def test_the_allow_list_may_name_any_host_a_query_can(make_daemon, upstreams):
    """IP literals of either family and names with a final dot, compared as written."""
    d = make_daemon(finger__forwarding="yes",
                    finger__forward_allow="::1, ::FFFF:127.0.0.3, finger.example.").start()
    upstream = upstreams("127.0.0.3", b"allowed\r\n")
    assert d.finger(b"x@::ffff:127.0.0.3\r\n") == b"allowed\r\n"
    assert d.finger(b"x@127.0.0.3\r\n") == b"Finger forwarding service denied\r\n"
    assert d.finger(b"x@finger.example\r\n") == b"Finger forwarding service denied\r\n"
    assert upstream.received == [b"x\r\n"]


def test_a_silent_upstream_gets_a_one_line_error_not_a_hang(forwarder, upstreams):
    upstreams("127.0.0.5")
    answer = forwarder.finger(b"x@127.0.0.5\r\n", timeout=6)  # three forward timeouts
    assert answer == b"127.0.0.5: no answer within 2 s\r\n"
    assert forwarder.metric("fingerd_requests_total", service="finger",
                            outcome="forward_failed") == 1


def test_a_refusing_or_unknown_host_gets_a_one_line_error(forwarder):
    assert forwarder.finger(b"x@127.0.0.9\r\n") == b"127.0.0.9: Connection refused\r\n"
    answer = forwarder.finger(b"x@" + b"a" * 64 + b".invalid\r\n")
    assert answer.endswith(b": unknown host\r\n") or answer.endswith(b": not a host name\r\n")
    assert forwarder.finger(b"x@..\r\n") == b"..: not a host name\r\n"
    assert forwarder.finger(b"x@127.0.0.17\x00\r\n") == b"127.0.0.17\\x00: not a host name\r\n"
    assert forwarder.finger(b"x@a\x1bb\r\n") == b"a\\x1bb: not a host name\r\n"


def test_a_huge_hostile_answer_is_cut_and_filtered(forwarder, upstreams):
    upstreams("127.0.0.6", b"\x1b]0;owned\x07\x1b[2J" + b"y" * 200000)
    answer = forwarder.finger(b"x@127.0.0.6\r\n")
    assert b"\x1b" not in answer and b"\x07" not in answer
    assert answer.endswith(b"(answer from 127.0.0.6 cut at 65536 bytes)\r\n")
    assert len(answer) < 66000


def test_forwarding_to_itself_ends_after_one_hop(make_daemon):
    on_host(make_daemon(finger__forwarding="yes"), "127.0.0.7").start()
    assert exchange(79, b"alice@127.0.0.7\r\n", host="127.0.0.7") == b"Happy and well\r\n"


@needs_tool("in.fingerd", "fingerd")
def test_forwards_to_debian_in_fingerd(forwarder):
    """Debian's netkit in.fingerd, run per connection as inetd would, as nobody."""
    skip_unless_free("127.0.0.8", 79)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.8", 79))
    listener.listen(4)

    def launch_one():
        conn, _ = listener.accept()
        with conn:
            subprocess.run([in_fingerd.path()], stdin=conn.fileno(), stdout=conn.fileno(),
                           stderr=subprocess.DEVNULL, user="nobody", timeout=20)

    launcher = threading.Thread(target=launch_one, daemon=True)
    launcher.start()
    try:
        answer = forwarder.finger(b"nobody@127.0.0.8\r\n").decode()
    finally:
        launcher.join(30)
        listener.close()
    assert "Login: nobody" in answer and "Name: nobody" in answer
    assert all(line.replace("\t", " ").isprintable() for line in answer.split("\r\n"))


def test_a_scrape_never_waits_behind_forwarding_on_the_pool(make_daemon, upstreams):
    d = make_daemon(fingerd__threads="1", finger__forwarding="yes",
                    finger__forward_timeout="5").start()
    upstreams("127.0.0.6")
    answers = []
    asker = threading.Thread(target=lambda: answers.append(d.finger(b"x@127.0.0.6\r\n",
                                                                     timeout=20)))
    asker.start()
    try:
        wait_until(lambda: d.metric("fingerd_pool_threads_busy") == 1,
                   what="the only pool thread waiting on the silent upstream")
        assert d.ready(), "the scrape is answered while the pool is busy"
        assert answers == [], "and before the forward is over"
    finally:
        asker.join(20)
    assert answers == [b"127.0.0.6: no answer within 5 s\r\n"]


def test_local_answers_never_wait_behind_forwards_to_a_silent_host(make_daemon, upstreams):
    """With the system's accounts an account's answer is made on the pool: forwards, which
    may each hold a thread for forward_timeout, take at most a quarter of its threads,
    so that a local query, and a set, are answered while they wait."""
    d = make_daemon(fingerd__threads="8", finger__system_users="yes",
                    finger__forwarding="yes", finger__forward_timeout="30").start()
    upstream = upstreams("127.0.0.7")
    answers = []

    def forward():
        answers.append(d.finger(b"x@127.0.0.7\r\n", timeout=60))

    askers = [threading.Thread(target=forward) for _ in range(8)]
    for asker in askers:
        asker.start()
    try:
        wait_until(lambda: len(upstream.held) == 2 and
                   d.metric("fingerd_pool_queue_depth") == 6,
                   what="two forwards waiting on the silent host, six waiting for a thread")
        assert d.metric("fingerd_pool_threads_busy") == 2
        assert d.finger(b"alice\r\n", timeout=60) == b"Happy and well\r\n"
        assert d.finger(b"/W bob\r\n", timeout=60).startswith(b"Login: bob\r\n")
        assert d.setter(b"alice\r\nSet beside the forwards\r\n", timeout=60) == b"OK\r\n"
        assert answers == [], "answered while every forward still waits"
    finally:
        upstream.close()  # the two held forwards end, then the others are refused
        for asker in askers:
            asker.join(60)
    assert sorted(answers) == [b""] * 2 + [b"127.0.0.7: Connection refused\r\n"] * 6


@pytest.mark.parametrize("system_users", ["no", "yes"])
def test_a_forward_waiting_for_a_thread_takes_no_longer_than_forward_timeout(make_daemon,
                                                                              upstreams,
                                                                              system_users):
    """forward_timeout counts from the query's arrival: forwards queued behind others to a
    silent host (one thread for forwards here) are answered when it has passed, not one
    forward_timeout each in turn, so none holds its client, and its connection's slot,
    longer than that. With the system's accounts too, whose queries are taken otherwise."""
    d = make_daemon(fingerd__threads="4", finger__forwarding="yes",
                    finger__forward_timeout="2", finger__system_users=system_users).start()
    upstreams("127.0.0.5")
    answers = []

    def forward():
        started = time.monotonic()
        answer = d.finger(b"x@127.0.0.5\r\n", timeout=30)
        answers.append((time.monotonic() - started, answer))

    askers = [threading.Thread(target=forward) for _ in range(4)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(40)
    assert len(answers) == 4
    assert max(took for took, _ in answers) < 3.5, answers
    not_asked = b"127.0.0.5: not asked, other forwards held every thread for 2 s\r\n"
    assert b"127.0.0.5: no answer within 2 s\r\n" in [answer for _, answer in answers]
    assert [answer for _, answer in answers].count(not_asked) >= 2, answers
    assert all(answer == not_asked or answer.startswith(b"127.0.0.5: no answer within ")
               for _, answer in answers), answers
    assert d.metric("fingerd_requests_total", service="finger",
                    outcome="forward_failed") == 4


@pytest.mark.parametrize("system_users", ["no", "yes"])
def test_forwards_to_a_silent_host_never_fill_fingers_connections(make_daemon, upstreams,
                                                                 system_users):
    """Forwards in progress hold at most half of finger's share of max_connections (14
    here, so 7): the others are answered at once without asking, and a local query
    meanwhile is answered, not told the server is busy."""
    d = make_daemon(fingerd__max_connections="16", fingerd__threads="4",
                    finger__forwarding="yes", finger__forward_timeout="5",
                    finger__system_users=system_users).start()
    upstream = upstreams("127.0.0.5")
    answers = []
    askers = [threading.Thread(target=lambda: answers.append(
        d.finger(b"x@127.0.0.5\r\n", timeout=120))) for _ in range(14)]
    for asker in askers:
        asker.start()
    refused = b"127.0.0.5: not asked, too many forwards in progress\r\n"
    try:
        # The seven held are answered only at forward_timeout (5 s): the first seven
        # answers are the ones refused at once.
        wait_until(lambda: len(upstream.held) == 1 and len(answers) >= 7,
                   what="seven forwards refused at once, one waiting on the silent host")
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert answers[:7] == [refused] * 7
    finally:
        for asker in askers:
            asker.join(120)
    assert len(answers) == 14
    assert answers.count(refused) == 7, answers


#: Run first by a daemon: a name lookup (not of an address) of a host under ``.hung``
#: waits until the file DNS_BACK names exists (30 s at most), as behind a DNS server
#: that does not answer, and then looks up localhost.
HUNG_DNS = """\
import os, socket, time
_lookup, _back = socket.getaddrinfo, os.environ["DNS_BACK"]
def getaddrinfo(host, *args, **kwargs):
    if str(host).endswith(".hung") and not kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
        deadline = time.monotonic() + 30
        while not os.path.exists(_back) and time.monotonic() < deadline:
            time.sleep(0.02)
        host = "localhost"
    return _lookup(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
"""


def test_hung_name_lookups_are_logged_once_and_their_end_once(make_daemon):
    """As hung account lookups are: a DNS server that does not answer fails every
    forward to a name for as long as it hangs, and a line each would be a flood."""
    d = make_daemon(finger__forwarding="yes", finger__forward_timeout="1")
    back = os.path.join(d.dir, "dns-back")
    d.start(env={**run_first(os.path.join(d.dir, "site"), HUNG_DNS), "DNS_BACK": back})
    for host in (b"a.hung", b"b.hung", b"a.hung"):
        answer = d.finger(b"x@" + host + b"\r\n", timeout=10)
        assert answer.startswith(host + b": name lookup took longer than "), answer
    hung = ("forwarding: looking up 'a.hung': name lookup took longer than 1 s (the query "
            "answered that the host was not reached; more such failures are not logged "
            "until lookups finish in time again)")
    wait_until(lambda: hung in d.log(), what="the hang in the log")
    with open(back, "w"):
        pass

    def lookups_back():
        d.finger(b"x@localhost\r\n", timeout=10)
        return "forwarding: lookups finish in time again" in d.log()

    wait_until(lookups_back, what="the end of the hang in the log")
    assert d.log().count("more such failures are not logged") == 1
    assert d.log().count("forwarding: lookups finish in time again") == 1
    assert d.metric("fingerd_requests_total", service="finger",
                    outcome="forward_failed") >= 3
