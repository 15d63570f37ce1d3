"""The parent's decisions, driven in process with a fake clock and fake workers."""

import json
import logging
import os
import signal
import socket
import time
from types import SimpleNamespace

import pytest

from fingerd.limits import REPLY_TIMEOUT, STARTUP_TIMEOUT
from fingerd.process.channel import MAX_QUEUED_REPLIES, MonitorClient, channel
from fingerd.process.exits_and_signals import ACCEPT_SIGNAL, EXIT_FATAL, describe_exit
from fingerd.process.parent.monitor import MAX_WAITING_SETS
from fingerd.process.parent.reloading import Plan
from fingerd.process.parent.reloads import ReloadRefused
from fingerd.process.parent.states import BACKOFF_CAP, HEALTHY_UPTIME, State, backoff_delay
from fingerd.process.parent.supervisor import KILL_AFTER, Supervisor
from fingerd.process.worker.logpipe import PipeHandler
from fingerd.users import fileio


def test_first_death_restarts_at_once():
    assert backoff_delay(1) == 0.0


def test_repeated_deaths_double_the_delay_up_to_the_cap():
    delays = [backoff_delay(n) for n in range(2, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_CAP
    assert delays == sorted(delays)


def wait_status_of(code=None, sig=None):
    pid = os.fork()
    if pid == 0:
        if sig:
            os.kill(os.getpid(), sig)
        os._exit(code or 0)
    return os.waitpid(pid, 0)[1]


def test_exit_statuses_are_described_by_code_or_signal():
    assert describe_exit(wait_status_of(code=3)) == "exited with status 3"
    assert describe_exit(wait_status_of(sig=signal.SIGKILL)) == "killed by SIGKILL"


def exited(code):
    """The wait status of a process that exited with ``code`` (Linux's encoding)."""
    return code << 8


def killed(signum):
    """The wait status of a process killed by ``signum`` (Linux's encoding)."""
    return int(signum)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeWorkers:
    """Starts no process: the supervisor gets real channels, the test holds their far ends."""

    def __init__(self):
        self.pids = []
        self.sent = []
        self.waited = []
        self.configured = []
        self.reload = []
        self.served = []
        self._ends = {}
        self._ended = []
        self.plan = None

    def configure(self, plan):
        previous, self.plan = self.plan, plan
        self.configured.append(plan)
        return previous

    def spawn(self, restarts, reload=False):
        pid = 4000 + len(self.pids)
        self.reload.append(reload)
        parent_end, worker_end = channel()
        log_r, log_w = os.pipe()
        os.set_blocking(log_r, False)
        self.pids.append(pid)
        self._ends[pid] = (worker_end, log_w)
        return pid, parent_end, log_r

    def serving(self, pid):
        self.served.append(pid)

    def kill(self, pid, signum):
        self.sent.append((pid, signum))

    def reap(self):
        ended, self._ended = self._ended, []
        return ended

    def wait(self, pid):
        self.waited.append(pid)

    @property
    def pid(self):
        """The newest worker's."""
        return self.pids[-1]

    def ready(self, pid=None, users_problem=None):
        MonitorClient(self._ends[pid or self.pid][0]).ready(users_problem)

    def closed(self, pid):
        """The worker ``pid`` says it accepts no more."""
        MonitorClient(self._ends[pid][0]).not_accepting()

    def log_error(self, message):
        record = logging.makeLogRecord({"levelno": logging.ERROR, "msg": message})
        handler = PipeHandler(self._ends[self.pid][1])
        handler.emit(record)
        handler.close()

    def end(self, status, pid=None):
        """The newest worker (or ``pid``) ends: its ends close, and the parent can reap it."""
        pid = pid or self.pid
        self._close(pid)
        self._ended.append((pid, status))

    def _close(self, pid):
        worker_end, log_w = self._ends.pop(pid)
        worker_end.close()
        os.close(log_w)

    def close(self):
        for pid in list(self._ends):
            self._close(pid)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def workers():
    fake = FakeWorkers()
    yield fake
    fake.close()


@pytest.fixture
def listener():
    with socket.socket() as sock:
        yield sock


@pytest.fixture
def reports():
    return []


@pytest.fixture
def supervisor(clock, workers, listener, reports):
    sup = Supervisor(None, {"finger": [listener]}, workers, None, on_ready=reports.append,
                     clock=clock)
    sup.start_worker()
    return sup


@pytest.fixture
def running(supervisor, workers):
    workers.ready()
    supervisor.step(0)
    return supervisor


def die(sup, workers, status=exited(1)):
    workers.end(status)
    sup.handle_sigchld()


def test_a_first_worker_that_said_it_was_ready_and_died_before_it_was_heard_started(
        supervisor, workers, reports):
    """Its ready waits unread on the channel as its death is reaped (it served a client
    and was killed at once): read first, it is a start, and the worker is restarted."""
    workers.ready()
    die(supervisor, workers, killed(signal.SIGKILL))
    assert supervisor.exit_status is None, "not a start that failed"
    assert reports == [None] and supervisor.state is State.BACKOFF


def test_a_worker_that_says_it_is_ready_is_running_and_startup_is_reported(
        supervisor, workers, reports):
    assert supervisor.state is State.STARTING
    workers.ready()
    supervisor.step(0)
    assert supervisor.state is State.RUNNING
    assert reports == [None]
    assert supervisor.exit_status is None


def test_workers_that_keep_dying_young_wait_longer_each_time_up_to_the_cap(
        running, workers, clock):
    delays = []
    for _ in range(9):
        die(running, workers)
        assert running.state is State.BACKOFF
        delays.append(running.deadline - clock.now)
        clock.now = running.deadline
        running.step(0)
        assert running.state is State.STARTING
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_CAP, BACKOFF_CAP]
    assert len(workers.pids) == 10 and running.restarts == 9


def test_a_healthy_workers_death_restarts_the_next_at_once(running, workers, clock):
    for _ in range(3):
        die(running, workers)
        clock.now = running.deadline
        running.step(0)
    workers.ready()
    running.step(0)
    clock.now += HEALTHY_UPTIME
    die(running, workers)
    assert running.deadline == clock.now
    running.step(0)
    assert running.state is State.STARTING and len(workers.pids) == 5
    die(running, workers)
    assert running.deadline - clock.now == 0.5


def test_a_worker_exiting_with_exit_fatal_waits_the_longest_even_after_a_healthy_life(
        running, workers, clock):
    clock.now += HEALTHY_UPTIME
    die(running, workers, exited(EXIT_FATAL))
    assert running.state is State.BACKOFF
    assert running.deadline - clock.now == BACKOFF_CAP


def test_only_the_first_workers_startup_can_fail(running, workers, clock):
    die(running, workers)
    running.step(0)
    assert running.state is State.STARTING
    die(running, workers)
    assert running.state is State.BACKOFF


def test_a_restarted_worker_not_ready_in_time_is_killed_and_the_next_one_started(
        running, workers, clock):
    """One stopped before it was ready (a kill -STOP from its own account) would
    otherwise be waited for forever, no worker serving and every HUP deferred."""
    die(running, workers)
    running.step(0)
    restarted = workers.pid
    clock.now += STARTUP_TIMEOUT - 0.1
    running.step(0)
    assert workers.sent == []
    clock.now += 0.1
    running.step(0)
    assert workers.sent == [(restarted, signal.SIGKILL)] and running.exit_status is None
    die(running, workers, killed(signal.SIGKILL))
    assert running.state is State.BACKOFF
    clock.now = running.deadline
    running.step(0)
    assert running.state is State.STARTING and workers.pid != restarted


def test_sighup_is_passed_to_the_worker(running, workers):
    running.handle_sighup()
    assert workers.sent == [(workers.pid, signal.SIGHUP)]


def test_term_stops_the_worker_and_kills_it_if_it_lingers(running, workers, clock, listener):
    running.handle_sigterm()
    assert running.state is State.STOPPING
    assert listener.fileno() == -1
    assert workers.sent == [(workers.pid, signal.SIGTERM)]
    clock.now += KILL_AFTER - 0.1
    running.step(0)
    assert workers.sent[-1][1] == signal.SIGTERM
    clock.now += 0.1
    running.step(0)
    assert workers.sent[-1] == (workers.pid, signal.SIGKILL)
    running.step(0)
    assert workers.sent.count((workers.pid, signal.SIGKILL)) == 1
    die(running, workers, killed(signal.SIGKILL))
    assert running.state is State.STOPPED
    assert running.exit_status == 0


def test_term_during_backoff_stops_without_starting_another(running, workers, clock):
    die(running, workers)
    running.step(0)
    die(running, workers)
    assert running.state is State.BACKOFF and running.deadline > clock.now
    running.handle_sigterm()
    assert running.exit_status == 0
    clock.now += BACKOFF_CAP
    running.step(0)
    assert len(workers.pids) == 2 and workers.sent == []


def test_a_first_worker_dying_before_it_is_ready_fails_startup_with_its_last_error(
        supervisor, workers, reports):
    workers.log_error("worker cannot read users file: Permission denied")
    die(supervisor, workers, exited(EXIT_FATAL))
    assert supervisor.state is State.FATAL
    assert supervisor.exit_status == 1
    assert reports == ["worker exited with status 78 during startup: "
                       "worker cannot read users file: Permission denied"]
    assert len(workers.pids) == 1


def test_a_first_worker_not_ready_in_time_is_killed_and_startup_fails(
        supervisor, workers, clock, reports):
    clock.now += STARTUP_TIMEOUT - 0.1
    supervisor.step(0)
    assert supervisor.state is State.STARTING
    clock.now += 0.1
    supervisor.step(0)
    assert supervisor.exit_status == 1
    assert reports == [f"worker not ready after {STARTUP_TIMEOUT:.0f} s"]
    assert workers.sent == [(workers.pid, signal.SIGKILL)] and workers.waited == [workers.pid]


# The channel: the parent never waits on the worker (docs/guide.md, "Processes and signals").

def send_request(workers, message, pid=None):
    """The newest worker (or ``pid``) sends ``message`` to the parent."""
    workers._ends[pid or workers.pid][0].send(json.dumps(message).encode())


def reply_to(sup, workers, pid=None):
    """The next reply the newest worker (or ``pid``) reads, the parent's loop turning
    until it comes (20 s at most); None if none came."""
    end = workers._ends[pid or workers.pid][0]
    end.setblocking(False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sup.step(0.05)
        try:
            return json.loads(end.recv(4096))
        except BlockingIOError:
            pass
    return None


def invalid_set(n):
    return {"op": "set", "id": n, "name": "-not a name", "status": "x", "by": "127.0.0.1",
            "deadline": time.monotonic() + REPLY_TIMEOUT}


def valid_set(n, deadline=None, by="127.0.0.1 (uid 1000, alice)"):
    """A set of alice's status made ``by`` a client, which the worker waits for until
    ``deadline`` (CLOCK_MONOTONIC; REPLY_TIMEOUT from now by default)."""
    return {"op": "set", "id": n, "name": "alice", "status": f"status {n}", "by": by,
            "deadline": time.monotonic() + REPLY_TIMEOUT if deadline is None else deadline}


def kills(workers):
    return [sent for sent in workers.sent if sent[1] == signal.SIGKILL]


def test_a_refused_set_is_answered_at_once_without_a_write(running, workers):
    send_request(workers, invalid_set(7))
    running.step(0)
    reply = json.loads(workers._ends[workers.pid][0].recv(4096))
    assert reply == {"id": 7, "ok": False, "error": "invalid user name"}
    assert not running.writes.busy


def test_a_worker_that_stops_reading_its_replies_is_killed_and_that_is_logged_once(
        running, workers, caplog):
    first = workers.pid
    with caplog.at_level(logging.ERROR):
        for n in range(5000):
            send_request(workers, invalid_set(n))
            running.step(0)
            if kills(workers):
                break
        for _ in range(10):
            running.step(0)
    assert kills(workers) == [(first, signal.SIGKILL)]
    assert caplog.text.count("killing it") == 1
    assert f"worker {first} stopped reading its channel ({MAX_QUEUED_REPLIES} replies " \
           f"waiting); killing it" in caplog.text
    die(running, workers, killed(signal.SIGKILL))
    assert running.state is State.BACKOFF
    running.step(0)
    assert running.state is State.STARTING and workers.pid != first


def test_replies_wait_while_the_workers_buffer_is_full_and_go_once_it_reads(running, workers):
    end = workers._ends[workers.pid][0]
    sent = 0
    while not running.live.channel.waiting:
        send_request(workers, invalid_set(sent))
        running.step(0)
        sent += 1
    for _ in range(MAX_QUEUED_REPLIES - 1):
        send_request(workers, invalid_set(sent))
        running.step(0)
        sent += 1
    end.settimeout(5)
    ids = []
    while len(ids) < sent:
        ids.append(json.loads(end.recv(4096))["id"])
        running.step(0)
    assert ids == list(range(sent))
    assert not running.live.channel.waiting and kills(workers) == []


@pytest.fixture
def users_file(tmp_path, monkeypatch):
    path = tmp_path / "users"
    path.write_bytes(b"alice:Happy\n")
    return str(path)


@pytest.fixture
def slow_writes(monkeypatch):
    """Each write waits a second first (in the writing child, which inherits the patch)."""
    real = fileio.replace_durably

    def slow(path, data, before_rename=None):
        time.sleep(1.0)
        return real(path, data, before_rename)

    monkeypatch.setattr(fileio, "replace_durably", slow)


def end_writes(sup):
    """Let the writer child go and turn the parent's loop until it is reaped (20 s at
    most)."""
    sup.writes.close()
    deadline = time.monotonic() + 20
    while sup.writes.busy and time.monotonic() < deadline:
        sup.step(0.05)
        sup.handle_sigchld()


@pytest.fixture
def writing(clock, workers, listener, users_file):
    """A running supervisor with a users file its writer writes for real."""
    sup = Supervisor(SimpleNamespace(users_file=users_file), {"finger": [listener]}, workers,
                     None, clock=clock)
    sup.start_worker()
    workers.ready()
    sup.step(0)
    yield sup
    end_writes(sup)


def test_a_set_is_answered_once_its_write_is_done(writing, workers, users_file, caplog):
    """And the parent logs it, as the worker names its client, made inert."""
    with caplog.at_level(logging.INFO, logger="fingerd"):
        send_request(workers, valid_set(1, by="127.0.0.1 (uid 1000, alice)\nforged"))
        reply = reply_to(writing, workers)
    assert reply["id"] == 1 and reply["ok"]
    assert open(users_file, "rb").read() == b"alice:status 1\n"
    assert [r.getMessage() for r in caplog.records if "set the status" in r.getMessage()] == [
        "setter: 127.0.0.1 (uid 1000, alice)\\nforged set the status of alice"]


def test_a_set_read_after_its_deadline_is_answered_too_late_and_not_written(
        writing, workers, users_file):
    """As when the parent was stopped before it read the request: the worker no longer
    waits, and its client was told the set failed."""
    send_request(workers, valid_set(1, deadline=time.monotonic() - 0.1))
    reply = reply_to(writing, workers)
    assert reply == {"id": 1, "ok": False, "error": "the users file was not written in time"}
    assert not writing.writes.busy, "no writer was forked for it"
    assert open(users_file, "rb").read() == b"alice:Happy\n"


def test_a_worker_that_floods_set_requests_is_killed(writing, workers, slow_writes, caplog):
    with caplog.at_level(logging.ERROR):
        for n in range(MAX_WAITING_SETS + 2):
            send_request(workers, valid_set(n))
            writing.step(0)
    assert kills(workers) == [(workers.pid, signal.SIGKILL)]
    assert caplog.text.count("killing it") == 1
    assert f"sent more than {MAX_WAITING_SETS} set requests without waiting for their " \
           f"answers" in caplog.text
    assert writing.writes.waiting == 0, "its requests not yet begun are dropped"


def test_the_answer_to_a_dead_workers_set_is_not_sent_to_the_next(writing, workers, clock,
                                                                 slow_writes, users_file):
    send_request(workers, valid_set(1))
    writing.step(0)
    assert writing.writes.busy
    die(writing, workers)
    clock.now = writing.deadline
    writing.step(0)
    workers.ready()
    writing.step(0)
    deadline = time.monotonic() + 20
    while writing.writes.writing and time.monotonic() < deadline:
        writing.step(0.05)
    end = workers._ends[workers.pid][0]
    end.setblocking(False)
    with pytest.raises(BlockingIOError):
        end.recv(4096)
    assert open(users_file, "rb").read() == b"alice:status 1\n", "the write itself is done"


@pytest.mark.parametrize("data, reason", [
    (b"not json", "sent a malformed request"),
    (json.dumps({"op": "ready"}).encode(), "said it was ready twice"),
])
def test_a_worker_that_sends_what_no_worker_sends_is_killed(running, workers, caplog, data,
                                                            reason):
    with caplog.at_level(logging.ERROR):
        workers._ends[workers.pid][0].send(data)
        running.step(0)
    assert kills(workers) == [(workers.pid, signal.SIGKILL)]
    assert f"worker {workers.pid} {reason}; killing it" in caplog.text


def test_the_loop_lets_an_idle_writer_go_at_its_deadline(writing, workers, clock, users_file):
    send_request(workers, valid_set(1))
    deadline = time.monotonic() + 20
    # While the write goes on, the deadline is the one that would promote it.
    while ((writing.writes.writing or writing.writes.deadline is None)
           and time.monotonic() < deadline):
        writing.step(0.05)
    assert writing._timeout() == pytest.approx(writing.writes.deadline - clock.now)
    clock.now = writing.writes.deadline
    writing.step(0)
    while writing.writes.busy and time.monotonic() < deadline:
        writing.step(0.05)
        writing.handle_sigchld()
    assert not writing.writes.busy


# Reloading the configuration (HUP): the new worker starts beside the old one.

class Reloader:
    """Stands for reloading.prepare: hands out the plans a test queues, or refuses."""

    def __init__(self):
        self.plans = []
        self.asked = 0

    def __call__(self, config, sockets):
        self.asked += 1
        plan = self.plans.pop(0)
        if isinstance(plan, str):
            raise ReloadRefused(plan)
        return plan


@pytest.fixture
def reloads():
    return []


@pytest.fixture
def reloader():
    return Reloader()


@pytest.fixture
def reloading(clock, workers, listener, reloader, reloads, users_file):
    workers.plan = Plan(SimpleNamespace(path="fingerd.conf", name="first",
                                        users_file=users_file), None, {"finger": [listener]})
    sup = Supervisor(workers.plan.config, workers.plan.sockets, workers,
                     None, clock=clock, reloader=reloader,
                     on_reload=lambda applied, message, asked: reloads.append((applied, message)))
    sup.start_worker()
    workers.ready()
    sup.step(0)
    return sup


def new_plan(name="second", users_file=None):
    """A plan with a socket kept, one fresh and one no longer configured."""
    fresh, unused = socket.socket(), socket.socket()
    return Plan(SimpleNamespace(path="fingerd.conf", name=name, users_file=users_file), None,
                {"finger": [fresh]}, unused=(unused,), fresh=(fresh,))


def begin_reload(reloading, workers, reloader):
    """A HUP with a valid configuration: the pids of the worker serving and of the new one."""
    old = workers.pid
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    return old, workers.pid


def test_an_invalid_configuration_changes_nothing_and_the_users_file_is_read_again(
        reloading, workers, reloader, reloads):
    reloader.plans.append("fingerd.conf:3: [finger] listen: not HOST:PORT")
    reloading.handle_sighup()
    assert reloads == [(False, "fingerd.conf:3: [finger] listen: not HOST:PORT")]
    assert reloading.state is State.RUNNING and len(workers.pids) == 1
    assert workers.sent == [(workers.pid, signal.SIGHUP)]
    assert workers.configured == []


def test_a_valid_configuration_starts_a_new_worker_and_the_old_retires_once_it_is_ready(
        reloading, workers, reloader, reloads, clock):
    old = workers.pid
    plan = new_plan()
    reloader.plans.append(plan)
    reloading.handle_sighup()
    new = workers.pid
    assert new != old and workers.configured == [plan]
    assert workers.reload == [False, True], "a reload's worker tells its users file's problem"
    assert reloading.state is State.REPLACING and reloading.config is plan.config
    assert workers.sent == [], "the old worker serves until the new one is ready"
    workers.ready(new)
    reloading.step(0)
    assert reloading.state is State.RUNNING and reloading.live.pid == new
    assert workers.sent == [(old, signal.SIGTERM)], "the new one accepts nothing yet"
    assert reloads == [], "no outcome while the old one may still accept"
    workers.closed(old)
    reloading.step(0)
    assert workers.sent == [(old, signal.SIGTERM), (new, ACCEPT_SIGNAL)]
    assert reloads == [(True, f"configuration fingerd.conf applied: worker {new} serves it")]
    assert plan.unused[0].fileno() != -1, "dropped sockets stay open while the old one lives"
    workers.end(exited(0), pid=old)
    reloading.handle_sigchld()
    assert plan.unused[0].fileno() == -1 and plan.fresh[0].fileno() != -1
    assert reloading.reloads.retiring == [] and reloading.state is State.RUNNING


def test_a_users_file_the_new_worker_cannot_serve_is_said_once_and_the_reload_applies(
        reloading, workers, reloader, reloads, caplog):
    old, new = begin_reload(reloading, workers, reloader)
    with caplog.at_level(logging.INFO, logger="fingerd"):
        workers.ready(new, "users file rejected: users: No such file or directory\nforged; "
                           "2 users still served")
        reloading.step(0)
        workers.closed(old)
        reloading.step(0)
    said = "users file rejected: users: No such file or directory\\nforged; 2 users still served"
    assert reloads == [(True, f"configuration fingerd.conf applied: worker {new} serves it; "
                              f"{said}")]
    assert reloading.state is State.RUNNING
    assert workers.sent == [(old, signal.SIGTERM), (new, ACCEPT_SIGNAL)]
    assert [(r.levelno, r.getMessage()) for r in caplog.records
            if "users file" in r.getMessage()] == [(logging.ERROR, said)]


def test_a_retiring_worker_that_lingers_is_killed(reloading, workers, reloader, clock):
    old = workers.pid
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    workers.ready()
    reloading.step(0)
    clock.now += KILL_AFTER - 0.1
    reloading.step(0)
    assert [signum for pid, signum in workers.sent if pid == old] == [signal.SIGTERM]
    clock.now += 0.1
    reloading.step(0)
    assert [signum for pid, signum in workers.sent if pid == old] == [signal.SIGTERM,
                                                                      signal.SIGKILL]


def test_the_new_worker_accepts_once_the_old_one_is_gone_without_a_word(
        reloading, workers, reloader, reloads):
    old, new = begin_reload(reloading, workers, reloader)
    workers.ready(new)
    reloading.step(0)
    workers.closed(new)  # the new worker's own word is not the old one's
    reloading.step(0)
    assert workers.sent == [(old, signal.SIGTERM)] and reloads == []
    workers.end(killed(signal.SIGKILL), pid=old)
    reloading.handle_sigchld()
    assert workers.sent == [(old, signal.SIGTERM), (new, ACCEPT_SIGNAL)]
    assert reloads == [(True, f"configuration fingerd.conf applied: worker {new} serves it")]


def test_a_reloads_worker_accepts_at_once_when_the_one_it_replaced_died_meanwhile(
        reloading, workers, reloader, reloads):
    old, new = begin_reload(reloading, workers, reloader)
    workers.end(killed(signal.SIGKILL), pid=old)
    reloading.handle_sigchld()
    workers.ready(new)
    reloading.step(0)
    assert workers.sent == [(new, ACCEPT_SIGNAL)]
    assert reloads == [(True, f"configuration fingerd.conf applied: worker {new} serves it")]


def test_a_reloads_worker_dead_before_its_handover_is_not_signalled_and_its_successor_serves(
        reloading, workers, reloader, reloads):
    old, new = begin_reload(reloading, workers, reloader)
    workers.ready(new)
    reloading.step(0)
    workers.end(killed(signal.SIGKILL), pid=new)
    reloading.handle_sigchld()
    workers.closed(old)
    reloading.step(0)
    assert (new, ACCEPT_SIGNAL) not in workers.sent, "its pid may be another process's"
    assert reloads == [(True, "configuration fingerd.conf applied: the next worker starts "
                              "with it")]


def test_a_new_worker_that_dies_before_it_is_ready_is_a_refused_reload(
        reloading, workers, reloader, reloads):
    old, first = workers.pid, workers.plan
    plan = new_plan()
    reloader.plans.append(plan)
    reloading.handle_sighup()
    new = workers.pid
    workers.log_error("worker cannot read users file: Permission denied")
    workers.end(exited(EXIT_FATAL), pid=new)
    reloading.handle_sigchld()
    assert reloads == [(False, f"the new worker {new} exited with status 78: worker cannot "
                               f"read users file: Permission denied")]
    assert reloading.state is State.RUNNING and reloading.live.pid == old
    assert reloading.config is first.config and reloading.sockets is first.sockets
    assert workers.plan is first, "the next worker is started as before"
    assert plan.fresh[0].fileno() == -1 and plan.unused[0].fileno() != -1
    assert workers.sent == [(old, signal.SIGHUP)], "the users file is read again either way"


def test_the_next_worker_reads_the_table_of_the_last_one_ready_not_of_one_that_died_first(
        reloading, workers, reloader):
    first = workers.pid
    _, dead = begin_reload(reloading, workers, reloader)
    workers.end(exited(EXIT_FATAL), pid=dead)
    reloading.handle_sigchld()
    _, new = begin_reload(reloading, workers, reloader)
    workers.ready(new)
    reloading.step(0)
    assert workers.served == [first, new]


def test_a_new_worker_not_ready_in_time_is_killed_and_the_reload_refused(
        reloading, workers, reloader, reloads, clock):
    old, new = begin_reload(reloading, workers, reloader)
    clock.now += STARTUP_TIMEOUT
    reloading.step(0)
    assert workers.sent == [(new, signal.SIGKILL)]
    workers.end(killed(signal.SIGKILL), pid=new)
    reloading.handle_sigchld()
    assert reloads == [(False, f"the new worker {new} not ready after "
                               f"{STARTUP_TIMEOUT:.0f} s")]
    assert reloading.live.pid == old and reloading.state is State.RUNNING
    assert workers.sent[-1] == (old, signal.SIGHUP), "the users file is read again"


def test_a_hup_during_a_reload_reloads_again_once_the_old_worker_is_gone(
        reloading, workers, reloader, reloads):
    first = workers.pid
    reloader.plans += [new_plan("second"), new_plan("third")]
    reloading.handle_sighup()
    reloading.handle_sighup()
    assert reloader.asked == 1
    workers.ready()
    reloading.step(0)
    assert reloader.asked == 1, "not while the old worker still finishes its work"
    workers.end(exited(0), pid=first)
    reloading.handle_sigchld()
    assert reloader.asked == 2 and reloading.state is State.REPLACING
    assert reloading.config.name == "third"


def test_each_outcome_says_when_the_last_hup_it_answers_came(reloading, workers, reloader):
    """fingerd-ctl reload takes the first outcome asked at or after its HUP: a HUP during
    a reload is answered by the next, never by the one under way when it came."""
    asked = []
    reloading.on_reload = lambda applied, message, at: asked.append(at)
    first = workers.pid
    reloader.plans += [new_plan("second"), new_plan("third")]
    before = time.monotonic()
    reloading.handle_sighup()
    between = time.monotonic()
    reloading.handle_sighup()
    second = workers.pid
    workers.ready()
    reloading.step(0)
    workers.end(exited(0), pid=first)  # gone without a word: the handover is done
    reloading.handle_sigchld()
    assert len(asked) == 1 and before <= asked[0] <= between
    workers.ready()
    reloading.step(0)
    workers.closed(second)
    reloading.step(0)
    assert len(asked) == 2 and asked[1] >= between


def test_term_during_a_reload_stops_both_workers(reloading, workers, reloader, listener):
    old = workers.pid
    plan = new_plan()
    reloader.plans.append(plan)
    reloading.handle_sighup()
    new = workers.pid
    reloading.handle_sigterm()
    assert sorted(workers.sent) == sorted([(old, signal.SIGTERM), (new, signal.SIGTERM)])
    assert plan.fresh[0].fileno() == -1 and plan.unused[0].fileno() == -1
    workers.end(exited(0), pid=new)
    reloading.handle_sigchld()
    assert reloading.state is State.STOPPING
    workers.end(exited(0), pid=old)
    reloading.handle_sigchld()
    assert reloading.exit_status == 0


def test_a_reload_while_no_worker_runs_applies_and_starts_the_next_at_once(
        reloading, workers, reloader, reloads, clock):
    for _ in range(3):
        die(reloading, workers)
        clock.now = reloading.deadline
        reloading.step(0)
    die(reloading, workers)
    assert reloading.state is State.BACKOFF and reloading.deadline > clock.now
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    assert reloads and reloads[0][0] is True
    reloading.step(0)
    assert reloading.state is State.STARTING and len(workers.pids) == 5


def test_a_status_set_through_the_old_worker_during_a_reload_is_read_by_the_new_one(
        reloading, workers, reloader, users_file):
    old = workers.pid
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    new = workers.pid
    send_request(workers, valid_set(1), pid=old)
    reply = reply_to(reloading, workers, pid=old)
    assert reply == {"id": 1, "ok": True, "old": reply["old"], "new": reply["new"]}
    assert open(users_file, "rb").read() == b"alice:status 1\n"
    assert (new, signal.SIGHUP) in workers.sent and (old, signal.SIGHUP) not in workers.sent
    end_writes(reloading)


def test_a_set_whose_outcome_is_unknown_during_a_reload_is_read_by_the_new_worker(
        reloading, workers, reloader, users_file, monkeypatch):
    real = fileio.replace_durably

    def in_place_not_durable(path, data, before_rename=None):
        real(path, data, before_rename)
        raise fileio.NotDurable(5, "Input/output error")

    monkeypatch.setattr(fileio, "replace_durably", in_place_not_durable)
    old = workers.pid
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    new = workers.pid
    send_request(workers, valid_set(1), pid=old)
    assert reply_to(reloading, workers, pid=old)["unknown"] is True
    assert open(users_file, "rb").read() == b"alice:status 1\n"
    assert (new, signal.SIGHUP) in workers.sent, "the file may have changed: read it again"
    assert (old, signal.SIGHUP) not in workers.sent
    end_writes(reloading)


def test_a_set_once_the_reload_is_done_is_not_read_again_by_the_retiring_worker(
        reloading, workers, reloader, users_file):
    old = workers.pid
    reloader.plans.append(new_plan(users_file=users_file))
    reloading.handle_sighup()
    new = workers.pid
    workers.ready(new)
    reloading.step(0)
    assert workers.sent == [(old, signal.SIGTERM)], "the old worker retires"
    send_request(workers, valid_set(1), pid=new)
    assert reply_to(reloading, workers, pid=new)["ok"]
    assert open(users_file, "rb").read() == b"alice:status 1\n"
    assert workers.sent == [(old, signal.SIGTERM)], "a retiring worker is not told to read"
    end_writes(reloading)


def test_a_hup_while_a_restarted_worker_starts_reloads_once_it_is_ready(
        reloading, workers, reloader):
    die(reloading, workers)
    reloading.step(0)
    assert reloading.state is State.STARTING
    reloader.plans.append(new_plan())
    reloading.handle_sighup()
    assert reloader.asked == 0
    workers.ready()
    reloading.step(0)
    assert reloader.asked == 1 and reloading.state is State.REPLACING


def test_a_reloader_that_fails_unexpectedly_is_a_refused_reload_and_the_parent_goes_on(
        reloading, workers, reloads, caplog):
    def broken(config, sockets):
        raise OSError(5, "Input/output error")

    reloading.reloader = broken
    with caplog.at_level(logging.ERROR):
        reloading.handle_sighup()
    assert reloads == [(False, "reading the configuration again failed: "
                               "OSError(5, 'Input/output error')")]
    assert reloading.state is State.RUNNING and "Traceback" in caplog.text
