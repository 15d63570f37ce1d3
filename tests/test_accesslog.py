"""The access log: one unforgeable line per request."""

import os
import pwd
import re
import signal
import threading
import time

from fingerd.accesslog import AccessLog, escape, lines_of
from fingerd.loghandlers import STAMP_END
from fingerd.serving.service import Answer
from tests.support.full_fs import fill
from tests.support.polling import wait_until
from tests.support.procfs import worker_of

LINE = re.compile(r"access service=(\w+) peer=127\.0\.0\.1 kind=([\w-]+) outcome=(\w+) "
                  r"bytes=(\d+) seconds=\d+\.\d{6}( login=\"[^\"]*\")?( user=\".*\")?$")
#: The login the setter's lines name: the account this suite runs as.
ME = pwd.getpwuid(os.geteuid()).pw_name


def access_lines(d, count):
    wait_until(lambda: d.log().count(" access ") >= count, what=f"{count} access lines")
    return [re.sub(r"^worker\[\d+\]: ", "", line.split(": INFO ", 1)[1])
            for line in d.log().splitlines() if " access " in line]


def test_escape_makes_any_text_one_printable_line():
    assert escape('al"ice\\\n\x1b[2J\u202e\xff') == '"al\\"ice\\\\\\x0a\\x1b[2J\\u202e\\xff"'
    assert escape("x" * 100) == '"' + "x" * 64 + '"...'
    assert escape("x" * 61 + "...") == '"' + "x" * 61 + '..."', "a name that ends in dots"
    assert escape("x" * 64) == '"' + "x" * 64 + '"', "64 characters are not cut"


def test_escape_tells_a_character_beyond_u_ffff_from_one_below_it_and_a_digit():
    assert escape("\U0001f600") == '"\\U0001f600"'
    assert escape("\u1f600") == '"\\u1f600"'
    assert escape("\U0010ffff\uffff") == '"\\U0010ffff\\uffff"'


def test_a_line_is_made_from_its_entry_stamped_to_the_millisecond():
    when = time.mktime((2026, 12, 6, 1, 2, 3, 0, 0, -1)) + 0.0075
    entries = [(when, 0.00032, "finger", "192.0.2.7", "user", "found", 16, None, None),
               (when + 1, 1.5, "setter", "127.0.0.1", None, "ok", 4, "bob", 'a"b\n')]
    assert lines_of(entries) == [
        f"2026-12-06 01:02:03,007{STAMP_END}access service=finger peer=192.0.2.7 "
        "kind=user outcome=found bytes=16 seconds=0.000320",
        f"2026-12-06 01:02:04,007{STAMP_END}access service=setter peer=127.0.0.1 kind=- "
        'outcome=ok bytes=4 seconds=1.500000 login="bob" user="a\\"b\\x0a"']


def test_the_name_asked_for_is_noted_only_with_log_queries():
    noted = []

    class Sink:
        def add_access_entry(self, entry):
            noted.append(entry)

    answer = Answer("found", b"Happy\r\n", "user", "alice")
    for log_queries in (False, True):
        AccessLog(log_queries, Sink(), clock=lambda: 100.25).log(
            "finger", ("192.0.2.7", 79), answer, 0.5)
    assert noted == [(100.25, 0.5, "finger", "192.0.2.7", "user", "found", 7, None, name)
                     for name in (None, "alice")]


def test_without_a_batching_handler_each_line_is_a_record(caplog):
    answer = Answer("not_found", b"No such user\r\n", "user", "bob")
    with caplog.at_level("INFO", logger="fingerd.access"):
        AccessLog(False).log("finger", ("192.0.2.7", 79), answer, 0.25)
    assert [r.getMessage() for r in caplog.records] == [
        "access service=finger peer=192.0.2.7 kind=user outcome=not_found bytes=14 "
        "seconds=0.250000"]


def test_one_line_per_request_without_names_unless_asked(make_daemon):
    daemon = make_daemon(fingerd__access_log="yes").start()
    daemon.finger(b"alice\r\n")
    daemon.finger(b"nobody\r\n")
    daemon.setter(b"bob\r\nAway\r\n")
    lines = access_lines(daemon, 3)
    parsed = [LINE.match(line).groups() for line in lines]
    assert parsed == [("finger", "user", "found", "16", None, None),
                      ("finger", "user", "not_found", "14", None, None),
                      ("setter", "set", "ok", "4", f' login="{ME}"', None)]
    assert "alice" not in "".join(lines)


def test_names_are_logged_escaped_with_log_queries(make_daemon):
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes").start()
    d.finger(b"evil\rfingerd[1]: INFO forged\x1b[2J\r\n")
    line = access_lines(d, 1)[0]
    assert line.endswith(' user="evil\\x0dfingerd[1]: INFO forged\\x1b[2J"')
    assert "\r" not in d.log() and "\x1b" not in d.log()


def test_a_finger_lines_escapes_are_bytes_sent_and_a_web_lines_characters(make_daemon, ports):
    """As guide.md says: finger reads a query as Latin-1, the web a name as UTF-8 text."""
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes").listen(
        "web", f"127.0.0.1:{ports.take()}").start()
    d.finger("\u00e9\r\n".encode())
    assert access_lines(d, 1)[0].endswith(' user="\\xc3\\xa9"')
    d.web(b"GET /users/%C3%A9 HTTP/1.0\r\n\r\n")
    assert access_lines(d, 2)[1].endswith(' user="\\xe9"')


def test_access_log_is_off_by_default_but_setter_changes_are_always_logged(make_daemon):
    d = make_daemon().start()
    d.finger(b"alice\r\n")
    d.setter(b"bob\r\nAway\r\n")
    wait_until(lambda: f"setter: 127.0.0.1 (uid {os.geteuid()}, {ME}) set the status of bob"
               in d.log(),
               what="the setter's line")
    assert " access " not in d.log()


# Batches: whole lines, within a second, a killed worker's last second, losses counted.

def query_names(d, names):
    """Ask for each of ``names`` in turn; the time each answer came."""
    answered = []
    for name in names:
        assert d.finger(name.encode() + b"\r\n").endswith(b"\r\n")
        answered.append((name, time.monotonic()))
    return answered


def logged_names(d):
    return re.findall(r' user="([^"]*)"$', d.log(), re.M)


def worker_pid(d):
    return int(wait_until(lambda: re.findall(r"started worker (\d+)", d.log()),
                          what="the worker")[-1])


def test_lines_of_concurrent_clients_arrive_whole_and_in_order(make_daemon):
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes",
                    fingerd__threads="8").start()
    clients, each = 6, 150
    threads = [threading.Thread(target=query_names, daemon=True,
                                args=(d, [f"c{k}q{i}" for i in range(each)]))
               for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    lines = access_lines(d, clients * each)
    assert len(lines) == clients * each
    assert all(LINE.match(line) for line in lines), "a line split or mixed with another"
    for k in range(clients):
        mine = [int(n) for n in re.findall(rf' user="c{k}q(\d+)"$', "\n".join(lines), re.M)]
        assert mine == list(range(each))


def test_a_line_reaches_the_log_within_about_a_second(make_daemon):
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes").start()
    query_names(d, ["first"])
    wait_until(lambda: "first" in logged_names(d), timeout=2.0, what="the line within ~1 s")


def test_a_killed_worker_loses_at_most_its_last_second(make_daemon):
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes").start()
    pid = worker_pid(d)
    answered = []
    for i in range(100_000):
        answered += query_names(d, [f"k{i}"])
        if answered[-1][1] - answered[0][1] > 3.0:
            break
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    old = [name for name, at in answered if at < killed - 1.5]
    assert old
    wait_until(lambda: set(old) <= set(logged_names(d)), timeout=5,
               what="every line older than 1.5 s")


def test_lines_the_parent_cannot_take_are_counted_and_said_once(make_daemon):
    """Said when the run of losses begins, and, once the parent reads again, how many
    lines it cost."""
    d = make_daemon(fingerd__access_log="yes", fingerd__threads="8").start()
    parent = d.proc.pid
    answered = [0] * 6

    def load(k, deadline):
        while time.monotonic() < deadline:
            d.finger(b"alice\r\n")
            answered[k] += 1

    def accounted():
        return d.log().count(": access service=") + d.metric(
            "fingerd_access_log_dropped_lines_total")

    os.kill(parent, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 3.0
        threads = [threading.Thread(target=load, args=(k, deadline), daemon=True)
                   for k in range(len(answered))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        dropped = d.metric("fingerd_access_log_dropped_lines_total")
    finally:
        os.kill(parent, signal.SIGCONT)
    assert dropped and dropped > 0, f"{sum(answered)} queries, none dropped"
    wait_until(lambda: accounted() >= sum(answered), timeout=10,
               what="every line written or counted")
    assert accounted() == sum(answered)
    assert d.log().count("access log lines dropped: the parent does not read them") == 1
    wait_until(lambda: re.findall(r"run of access log losses ended: (\d+) lines", d.log()),
               what="the end of the run of losses")
    assert re.findall(r"run of access log losses ended: (\d+) lines dropped", d.log()) == [
        str(int(d.metric("fingerd_access_log_dropped_lines_total")))]


def test_after_a_rotation_and_usr1_lines_go_to_the_new_file(make_daemon, tmp_path):
    log_file = tmp_path / "fingerd.log"
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes",
                    fingerd__log_file=str(log_file)).start()
    query_names(d, ["before"])
    wait_until(lambda: 'user="before"' in log_file.read_text(), what="the first line")
    os.rename(log_file, tmp_path / "fingerd.log.1")
    d.signal(signal.SIGUSR1)
    wait_until(lambda: log_file.exists() and "log file reopened" in log_file.read_text(),
               what="the new file")
    query_names(d, ["after"])
    wait_until(lambda: 'user="after"' in log_file.read_text(), what="the line in the new file")
    assert 'user="after"' not in (tmp_path / "fingerd.log.1").read_text()
    assert LINE.match(re.sub(r"^.*?: INFO worker\[\d+\]: ", "", next(
        line for line in log_file.read_text().splitlines() if 'user="after"' in line)))


def test_usr1_to_every_process_of_the_daemon_costs_neither_the_worker_nor_lines(make_daemon,
                                                                               tmp_path):
    """``systemctl kill -s USR1 fingerd`` and ``killall -USR1`` signal the worker too,
    which SIGUSR1 killed, with the access lines of the queries it had just answered."""
    log_file = tmp_path / "fingerd.log"
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes",
                    fingerd__log_file=str(log_file)).start()
    worker = worker_of(d.proc.pid)
    query_names(d, ["before"])
    for pid in (d.proc.pid, worker):
        os.kill(pid, signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1: log file reopened" in log_file.read_text(),
               what="the parent's reopening")
    query_names(d, ["after"])
    wait_until(lambda: 'user="after"' in log_file.read_text(), what="the line after it")
    assert worker_of(d.proc.pid) == worker
    assert 'user="before"' in log_file.read_text()
    assert "killed by" not in log_file.read_text()


def test_a_full_log_file_system_costs_log_lines_never_the_daemon(make_daemon, small_fs):
    """The review's finding: the parent died at the first batch of access lines it could
    not write. Now the daemon serves on, says once on standard error that it cannot
    write, and once it can, says in the file that lines may be missing."""
    log_file = small_fs / "fingerd.log"
    d = make_daemon(fingerd__log_file=str(log_file), fingerd__access_log="yes").start()
    worker = worker_of(d.proc.pid)
    filler = fill(small_fs)
    for _ in range(100):
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    wait_until(lambda: "cannot write log file" in d.log(), what="a batch that failed")
    for _ in range(100):
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    assert d.proc.poll() is None and worker_of(d.proc.pid) == worker
    assert d.log().count("cannot write log file") == 1
    os.unlink(filler)
    d.signal(signal.SIGUSR1)  # a record of the parent's own
    wait_until(lambda: "could not be written for a while (No space left on device)"
               in log_file.read_text(errors="replace"), what="the gap said in the file")
    assert d.finger(b"bob\r\n") == b"Sleeping\r\n"
    wait_until(lambda: "SIGUSR1: log file reopened" in log_file.read_text(errors="replace"),
               what="lines written again")
