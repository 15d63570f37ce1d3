"""Signals to the parent and the daemon's stop (docs/guide.md, "Processes and signals")."""

import os
import signal
import socket

from tests.support.net import can_connect
from tests.support.polling import wait_until
from tests.support.procfs import children, descriptors, processes_of, worker_of, zombies_of
from tests.support.set_loops import SetLoops


def test_sigterm_answers_a_query_in_progress_then_exits_cleanly(daemon):
    assert open(daemon.pidfile).read().strip() == str(daemon.proc.pid)
    with socket.create_connection(("127.0.0.1", daemon.finger_port), timeout=10) as client:
        client.sendall(b"ali")
        wait_until(lambda: daemon.metric("fingerd_connections_active") == 1, what="accepted")
        daemon.signal(signal.SIGTERM)
        wait_until(lambda: not can_connect(daemon.finger_port), what="accepting to stop")
        client.sendall(b"ce\r\n")
        assert client.recv(100) == b"Happy and well\r\n"
    assert daemon.proc.wait(15) == 0
    assert not os.path.exists(daemon.pidfile)
    assert_ports_free(daemon)


def test_a_stop_amid_sets_keeps_every_set_answered_ok_and_none_answered_error(make_daemon):
    """Sets keep coming, one account each on four threads, when the daemon is told to
    stop: an OK means the status is in the file, an ERROR that the file was left as
    it was; a set cut off unanswered may have been written or not."""
    loops = SetLoops(4)
    d = make_daemon(users=loops.users_file()).start()
    loops.start(d)
    try:
        wait_until(lambda: loops.made_at_least(20), what="sets going on")
        d.signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
    finally:
        loops.stop()
    loops.check(d.users_file)


#: Workers killed in turn by the test below.
KILLS = 6


def test_workers_killed_again_and_again_amid_sets_lose_no_set_and_leak_nothing(make_daemon):
    """Workers killed in turn (SIGKILL), each once it has answered, while two accounts
    set their statuses: each is replaced at once (kills from outside push no start
    back), the parent ends with the descriptors it began with and no unreaped child,
    and each account keeps the last status answered OK or one sent after it that was
    cut off."""
    loops = SetLoops(2)
    d = make_daemon(users=loops.users_file()).start()
    parent = d.proc.pid
    worker = worker_of(parent)
    before = descriptors(parent)
    loops.start(d)
    try:
        for _ in range(KILLS):
            # The parent hears it in a heartbeat, within a second of the start.
            wait_until(lambda: f"worker {worker} has answered requests" in d.log(),
                       what="the parent to know the worker has answered")
            os.kill(worker, signal.SIGKILL)
            worker = worker_of(parent, other_than=worker)
    finally:
        loops.stop()
    assert d.metric("fingerd_worker_restarts_total") == KILLS
    assert "keeps dying" not in d.log(), "a kill from outside pushed a start back"
    loops.check(d.users_file)
    # The users file writer lingers a second after the last set.
    wait_until(lambda: descriptors(parent) == before
               and not zombies_of(parent), what=f"the parent's {before} descriptors again, "
               "and no child left unreaped")


def test_sigint_stops_like_sigterm(daemon):
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(15) == 0
    assert "stopped" in daemon.log()
    assert not os.path.exists(daemon.pidfile)


def test_worker_ends_when_the_parent_stops(daemon):
    worker = worker_of(daemon.proc.pid)
    assert daemon.stop() == 0
    wait_until(lambda: not os.path.exists(f"/proc/{worker}"), what="the worker to end")


def test_a_parent_killed_amid_sets_leaves_no_process_and_the_next_start_takes_over(
        make_daemon):
    """SIGKILL gives the parent no say: the worker sees it gone and ends, as does a
    users file writer, the ports are free, the pidfile it left is taken over, and each
    account holds its last status answered OK (or one sent after it and cut off)."""
    loops = SetLoops(2)
    daemon = make_daemon(users=loops.users_file()).start()
    worker = worker_of(daemon.proc.pid)
    loops.start(daemon)
    try:
        wait_until(lambda: loops.made_at_least(20), what="sets going on")
        os.kill(daemon.proc.pid, signal.SIGKILL)
        assert daemon.proc.wait(10) == -signal.SIGKILL
        # A process that ended shows an empty command line until it is reaped.
        wait_until(lambda: not processes_of(daemon.config_file)
                   and not os.path.exists(f"/proc/{worker}"),
                   what="the worker and the users file writer to end")
    finally:
        loops.stop()
    assert_ports_free(daemon)
    assert os.path.exists(daemon.pidfile)
    loops.check(daemon.users_file)
    daemon.start()
    for user in loops.users:
        with open(daemon.users_file, "rb") as f:
            status = dict(line.split(b":", 1) for line in f.read().splitlines())[user]
        assert daemon.finger(user + b"\r\n") == status + b"\r\n"


def assert_ports_free(daemon):
    for port in (daemon.finger_port, daemon.setter_port, daemon.metrics_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)


def test_sighup_is_passed_to_the_worker(make_daemon):
    d = make_daemon(fingerd__reload_interval="3600").start()
    with open(d.users_file, "ab") as f:
        f.write(b"erin:Reloaded\n")
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.finger(b"erin\r\n") == b"Reloaded\r\n", what="the reload")


def test_sigusr1_reopens_the_log_file(make_daemon, public_dir):
    log_file = os.path.join(public_dir, "fingerd.log")
    d = make_daemon(fingerd__log_file=log_file).start()
    wait_until(lambda: os.path.exists(log_file) and "ready" in open(log_file).read(),
               what="the first log lines")
    os.rename(log_file, log_file + ".1")
    d.signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(log_file), what="the log file to be reopened")
    assert d.setter(b"alice\r\nRotated\r\n") == b"OK\r\n"
    wait_until(lambda: "set the status of alice" in open(log_file).read(),
               what="the worker's line in the new file")
    assert "set the status of alice" not in open(log_file + ".1").read()



def test_sigusr2_to_every_process_of_the_daemon_costs_nothing(make_daemon):
    """SIGUSR2 is the parent's word to a reload's worker that it may accept. Sent to every
    process of the daemon (``systemctl kill -s USR2 fingerd``, ``killall -USR2``), it
    must not kill the root parent, nor the users file writer amid its work: they ignore
    it, the worker serving already accepts, and a reload's handover still works."""
    d = make_daemon(fingerd__reload_interval="3600").start()
    assert d.setter(b"alice\r\nBefore\r\n") == b"OK\r\n"
    signalled = [d.proc.pid, *children(d.proc.pid)]
    assert len(signalled) == 3, "the parent, the worker and the writer, which lingers"
    for pid in signalled:
        os.kill(pid, signal.SIGUSR2)
    assert d.setter(b"alice\r\nAfter\r\n") == b"OK\r\n"
    assert d.finger(b"alice\r\n") == b"After\r\n"
    worker = worker_of(d.proc.pid)
    with open(d.users_file, "ab") as f:
        f.write(b"erin:Reloaded\n")
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.finger(b"erin\r\n") == b"Reloaded\r\n", what="the reload")
    worker_of(d.proc.pid, other_than=worker)
    assert d.proc.poll() is None and "SIGUSR2" not in d.log(), d.log()[-2000:]


def test_sigusr1_without_a_log_file_says_there_is_none_to_reopen(make_daemon):
    """Logging to standard error (no ``log_file``), a reopen claims no file reopened."""
    d = make_daemon().start()
    d.signal(signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1: no log_file to reopen" in d.log(), what="the reopen's line")
    assert "log file reopened" not in d.log()

def test_worker_log_lines_are_written_by_the_parent_tagged_with_the_worker_pid(daemon):
    worker = worker_of(daemon.proc.pid)
    daemon.setter(b"alice\r\nx\x01\r\n")
    wait_until(lambda: f"fingerd[{daemon.proc.pid}]: INFO worker[{worker}]: setter: refused"
               in daemon.log(), what="the worker's log line")


def test_worker_holds_neither_the_pidfile_nor_the_log_file(make_daemon, public_dir):
    log_file = os.path.join(public_dir, "fingerd.log")
    d = make_daemon(fingerd__log_file=log_file).start()
    worker = worker_of(d.proc.pid)
    targets = set()
    for fd in os.listdir(f"/proc/{worker}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{worker}/fd/{fd}"))
        except OSError:
            pass
    assert d.pidfile not in targets and log_file not in targets
    files = {t for t in targets if t.startswith("/") and not t.startswith("/memfd:")}
    assert files <= {os.devnull}, files


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(daemon):
    pid = worker_of(daemon.proc.pid)
    for _ in range(3):
        os.kill(pid, signal.SIGKILL)
        pid = worker_of(daemon.proc.pid, other_than=pid)
    assert "worker keeps dying; next start in 0.5 s" in daemon.log()
    assert "worker keeps dying; next start in 1.0 s" in daemon.log()
    assert daemon.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert daemon.metric("fingerd_worker_restarts_total") == 3


def test_signals_during_startup_wait_instead_of_killing(make_daemon):
    """As soon as the pidfile names it (what fingerd-ctl reads), a HUP is safe."""
    d = make_daemon()
    d.start(wait=False)
    wait_until(lambda: os.path.exists(d.pidfile) and open(d.pidfile).read().strip(),
               what="the pidfile")
    for _ in range(3):
        d.signal(signal.SIGHUP)
    wait_until(lambda: d.proc.poll() is None and d.ready(), what="fingerd to serve")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    # Each HUP is a reload, made once the first worker is ready (several may be one):
    # no worker is killed or restarted for them.
    wait_until(lambda: "applied: worker" in d.log(), what="a reload")
    wait_until(lambda: d.log().count("started worker") == 1 + d.log().count("applied: worker"),
               what="the reloads to be over")
    assert d.log().count("applied: worker") <= 3
    assert d.metric("fingerd_worker_restarts_total") == 0
    assert "refused" not in d.log() and "killing" not in d.log()
