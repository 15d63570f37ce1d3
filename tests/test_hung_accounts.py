"""A system account whose answer hangs (NSS, a home directory, the login records) costs its
query ``request_timeout``, never the pool: the query is answered ``Internal error in
server``, everyone else is served meanwhile, the hang is logged once a streak, and the
daemon stops with the lookups still stuck.

In process, ``pwd.getpwnam`` hangs as behind a silent LDAP server, through the real
service (assembly.Service) on real sockets; in a real daemon, the C library's
``getpwnam_r`` does, for names beginning with ``hung``: a library preloaded into it
(tests/support/hang_nss.c) never answers them.
"""

import dataclasses
import logging
import os
import pwd
import select
import socket
import threading
import time

import pytest

from fingerd.config import parse_config
from fingerd.finger.utmp import Session
from fingerd.metrics import Metrics
from fingerd.serving import finger
from fingerd.serving.assembly import Service
from fingerd.users.store import UserStore
from tests.support.accounts import made_accounts
from tests.support.markers import needs_root, needs_tool
from tests.support.net import answer_of, exchange
from tests.support.polling import wait_until
from tests.support.procfs import worker_of
from tests.support.utmp import pack_session

INTERNAL_ERROR = b"Internal error in server\r\n"
SERVICES = ("finger", "web", "metrics")


class HungNss:
    """``pwd.getpwnam`` as NSS answers it behind a hung LDAP server: a name starting
    with ``hung`` is never answered until ``release`` is set; ``ada`` is an account
    with a home of her own; any other name has none."""

    def __init__(self, home):
        self.home = home
        self.release = threading.Event()
        self.stuck = 0
        self._lock = threading.Lock()

    def __call__(self, name):
        if name.startswith("hung"):
            self._count(1)
            self.release.wait(60)
            self._count(-1)
        if name == "ada":
            return pwd.struct_passwd(("ada", "x", 5000, 100, "Ada Lovelace,,,", self.home,
                                      "/bin/sh"))
        raise KeyError(name)

    def _count(self, step):
        with self._lock:
            self.stuck += step


class Running:
    """A Service over ``HungNss`` answering on real loopback sockets, one a service."""

    def __init__(self, directory, request_timeout, sessions):
        users = os.path.join(directory, "users")
        with open(users, "w") as f:
            f.write("alice:Happy and well\n")
        utmp = os.path.join(directory, "utmp")
        with open(utmp, "wb") as f:
            f.writelines(pack_session(Session(name, "pts/1", "", int(time.time())))
                         for name in sessions)
        missing = os.path.join(directory, "missing")
        self.config = parse_config(
            f"[fingerd]\nthreads = 4\nrequest_timeout = {request_timeout}\n"
            f"users_file = {users}\n[finger]\nsystem_users = yes\nlist_users = yes\n"
            f"utmp_file = {utmp}\nwtmp_file = {missing}\nlastlog_file = {missing}\n"
            f"mail_dir = {missing}\n", os.path.join(directory, "fingerd.conf"))
        self.metrics = Metrics()
        store = UserStore(self.config.users_file, self.metrics)
        store.load()
        self.ports = {}
        sockets = {"setter": []}
        for service in SERVICES:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            self.ports[service] = sock.getsockname()[1]
            sockets[service] = [sock]
        self.service = Service(self.config, sockets, store, self.metrics)
        self.service.start()
        self.stopped = False

    def finger(self, query):
        return exchange(self.ports["finger"], query)

    def web(self, path):
        head, _, body = exchange(self.ports["web"], f"GET {path} HTTP/1.0\r\n\r\n".encode()) \
            .partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body

    def errors(self, service):
        return self.metrics.registry.get_sample_value(
            "fingerd_requests_total", {"service": service, "outcome": "error"})

    def stop(self):
        self.stopped = True
        self.service.stop()


@pytest.fixture
def nss(monkeypatch, tmp_path):
    hung = HungNss(str(tmp_path))
    monkeypatch.setattr(pwd, "getpwnam", hung)
    yield hung
    hung.release.set()
    wait_until(lambda: hung.stuck == 0, what="the stuck lookups to end")


@pytest.fixture
def serve(nss, tmp_path):
    """``serve(request_timeout, sessions=())``: a running Service, stopped at the end, its
    stuck lookups released first."""
    made = []

    def start(request_timeout, sessions=()):
        made.append(Running(str(tmp_path), request_timeout, sessions))
        return made[-1]

    yield start
    nss.release.set()
    for running in made:
        if not running.stopped:
            running.stop()


def sent(port, query):
    """A client that has sent ``query`` and waits for its answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(query)
    return s


def test_hung_lookups_hold_half_the_pool_at_most_and_the_rest_is_served(serve, nss):
    running = serve(request_timeout=60)
    port = running.ports["finger"]
    first = sent(port, b"/W hung1\r\n")
    with first:
        wait_until(lambda: nss.stuck == 1, what="the first lookup to hang")
        assert running.finger(b"ada\r\n") == b"Login: ada" + b" " * 22 + \
            b"Name: Ada Lovelace\r\n"
        with sent(port, b"hung2\r\n") as second:
            wait_until(lambda: nss.stuck == 2, what="the second lookup to hang")
            for query in (b"hung3\r\n", b"/W hung4\r\n", b"hung5\r\n", b"ada\r\n"):
                assert running.finger(query) == INTERNAL_ERROR, \
                    "with half the pool's threads waiting, a lookup is refused at once"
            assert nss.stuck == 2, "no refused lookup was started"
            assert running.finger(b"alice\r\n") == b"Happy and well\r\n"
            assert running.web("/users/alice")[0] == 200
            assert b"fingerd_requests_total" in exchange(running.ports["metrics"],
                                                         b"GET /metrics HTTP/1.0\r\n\r\n")
            assert select.select([first, second], [], [], 0)[0] == [], \
                "the hung queries are still waited for, within their 60 s"
    assert running.errors("finger") == 4


def test_users_of_the_users_file_are_answered_with_every_pool_thread_held(serve, nss):
    """With the system's accounts, a user of the users file (which wins over an account)
    is answered on the reading thread: slow account lookups, forwards and sets holding
    every pool thread made ``alice`` wait behind them."""
    running = serve(request_timeout=60)
    held = threading.Event()
    for _ in range(running.config.threads):
        running.service._pool.submit(held.wait, 30)
    try:
        assert running.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert running.finger(b"/W alice\r\n").endswith(b"Happy and well\r\n")
        with sent(running.ports["finger"], b"ada\r\n") as waiting:
            assert select.select([waiting], [], [], 0.5)[0] == [], \
                "an account's answer waits for a pool thread"
            held.set()
            assert waiting.recv(100).startswith(b"Login: ada")
    finally:
        held.set()


def test_a_user_is_answered_from_the_table_found_in_whatever_a_reload_does_meanwhile(
        serve, nss):
    """A user of the users file is answered from the table the reading thread found it in:
    a reload that removed ``hungry`` between that check and the answer sent the query to
    the account lookup on the reading thread, which NSS held (up to request_timeout, 60 s
    here) with every client of the service waiting behind it."""
    running = serve(request_timeout=60)
    store, users = running.service.store, running.config.users_file
    with open(users, "w") as f:
        f.write("alice:Happy and well\nhungry:Peckish\n")
    assert store.reload(force=True)
    server = next(s for s in running.service._servers if s.service.name == "finger")
    check, reloads = server.service.answers_inline, []

    def then_reload(request):
        """The check, then a reload without ``hungry`` (as the watcher's), published before
        the reading thread goes on to answer."""
        inline = check(request)
        if inline and not reloads:
            checked = store.table
            with open(users, "w") as f:
                f.write("alice:Happy and well\n")
            reloads.append(threading.Thread(target=store.reload, args=(True,)))
            reloads[0].start()
            wait_until(lambda: store.table is not checked, what="the reload to publish")
        return inline

    server.service = dataclasses.replace(server.service, answers_inline=then_reload)
    try:
        with sent(running.ports["finger"], b"hungry\r\n") as client:
            assert select.select([client], [], [], 10)[0] == [client], \
                "the reading thread waits on an account lookup"
            assert answer_of(client) == b"Peckish\r\n"
        assert "hungry" not in store.table and nss.stuck == 0
        assert running.finger(b"alice\r\n") == b"Happy and well\r\n"
    finally:
        nss.release.set()
        for reload in reloads:
            reload.join(10)


def test_a_query_is_parsed_once_with_the_system_accounts(serve, nss, monkeypatch):
    """Which thread answers a query depends on its name: it was parsed for that check, and
    again for the answer."""
    parsed, parse = [], finger.parse_query
    monkeypatch.setattr(finger, "parse_query", lambda line: parsed.append(line) or parse(line))
    running = serve(request_timeout=60)
    assert running.finger(b"/W alice\r\n").endswith(b"Happy and well\r\n")
    assert running.finger(b"ada\r\n").startswith(b"Login: ada")
    assert parsed == [b"/W alice", b"ada"], "answered on the reading thread, then by the pool"


def test_a_hung_query_is_answered_internal_error_and_the_streak_logged_once(serve, nss,
                                                                           caplog):
    running = serve(request_timeout=0.5)
    with caplog.at_level(logging.INFO, logger="fingerd.finger.sources"):
        assert running.finger(b"/W hung1\r\n") == INTERNAL_ERROR
        assert nss.stuck == 1, "still hung after its query was answered"
        assert running.finger(b"ada\r\n").startswith(b"Login: ada"), \
            "answered, while the streak goes on: a lookup is still stuck"
        for query in (b"hung2\r\n", b"/W hung1\r\n", b"ada\r\n"):
            assert running.finger(query) == INTERNAL_ERROR
        assert nss.stuck == 2
        assert running.errors("finger") == 4
        nss.release.set()
        wait_until(lambda: running.finger(b"ada\r\n").startswith(b"Login: ada")
                   and "in time again" in caplog.text, what="lookups to recover")
        for _ in range(2):
            assert running.finger(b"ada\r\n").startswith(b"Login: ada")
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "system accounts: looking up 'hung1': account lookup took longer "
                          "than 0.5 s (answered 'Internal error in server'; more such "
                          "failures are not logged until lookups finish in time again)"),
        (logging.INFO, "system accounts: lookups finish in time again")]


def test_the_web_answers_500_for_a_hung_list_and_a_hung_page(serve, nss):
    running = serve(request_timeout=0.5, sessions=["hung9"])
    for path in ("/", "/users/hung1", "/api/users", "/api/users/hung1"):
        status, body = running.web(path)
        assert (status, body) == (500, b"Internal error in server\n"), path
    assert nss.stuck == 2
    assert running.finger(b"\r\n") == INTERNAL_ERROR
    assert running.web("/users/alice")[0] == 200
    assert running.errors("web") == 4


def test_a_stop_does_not_wait_for_stuck_lookups(serve, nss, caplog):
    running = serve(request_timeout=0.5)
    assert running.finger(b"/W hung1\r\n") == INTERNAL_ERROR
    with caplog.at_level(logging.WARNING, logger="fingerd.serving.assembly"):
        running.stop()
    assert nss.stuck == 1, "the lookup is still stuck after the stop"
    assert not [r for r in caplog.records if r.name == "fingerd.serving.assembly"], \
        "no answer was in progress at the stop"


def stuck_in_nss(pid):
    """Threads of process ``pid`` waiting in hang_nss.c's pause(2), each a lookup stuck."""
    waiting = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                waiting += f.read().endswith("sys_pause")
        except OSError:
            pass
    return waiting


@needs_root
@needs_tool("cc", "gcc")
def test_a_daemon_whose_nss_hangs_answers_the_rest_and_stops_with_lookups_stuck(
        make_daemon, ports, public_dir, hang_nss_library):
    missing = os.path.join(public_dir, "missing")
    short = b"Login: fgnss1" + b" " * 19 + b"Name: Ada Lovelace\r\n"
    with made_accounts(os.path.join(public_dir, "home"), {"fgnss1": "Ada Lovelace"},
                       42201) as made:
        d = make_daemon(fingerd__threads="4", fingerd__request_timeout="1",
                        finger__system_users="yes", finger__list_users="yes",
                        finger__utmp_file=missing, finger__wtmp_file=missing,
                        finger__lastlog_file=missing, finger__mail_dir=missing) \
            .listen("web", f"127.0.0.1:{ports.take()}") \
            .start(env={"LD_PRELOAD": hang_nss_library})
        worker = worker_of(d.proc.pid)
        assert d.finger(b"/W hung1\r\n") == INTERNAL_ERROR
        assert d.finger(b"fgnss1\r\n") == short, "another account is answered meanwhile"
        assert d.finger(b"/W fgnss1\r\n") == \
            b"Login: fgnss1         \t\t\tName: Ada Lovelace\r\nDirectory: " + \
            made["fgnss1"][1].encode() + b"\tShell: /bin/sh\r\nNever logged in.\r\n" \
            b"No mail.\r\nNo Plan.\r\n"
        clients = [sent(d.finger_port, b"/W hung2\r\n") for _ in range(4)]
        assert [answer_of(c) for c in clients] == [INTERNAL_ERROR] * 4, \
            "more hung queries than pool threads, each answered"
        assert d.finger(b"\r\n") == INTERNAL_ERROR, "the list looks accounts up too"
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert d.web(b"GET /users/alice HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        assert d.web(b"GET /users/hung1 HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 500 ")
        assert d.finger(b"fgnss1\r\n") == INTERNAL_ERROR, \
            "with half the pool's worth of lookups stuck, every account is refused at once"
        assert d.metric("fingerd_requests_total", service="finger", outcome="error") == 7
        assert d.metric("fingerd_requests_total", service="web", outcome="error") == 1
        assert stuck_in_nss(worker) == 2, "two lookups stuck in NSS, the rest refused"
        warnings = [line for line in d.log().splitlines() if "system accounts:" in line]
        assert len(warnings) == 1 and "looking up 'hung1'" in warnings[0], d.log()
        assert d.stop() == 0
        assert not os.path.exists(f"/proc/{worker}")
        assert "killing it" not in d.log()
