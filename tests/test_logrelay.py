"""Worker log records to the parent: whole, in order, never blocking the worker; and
the parent, which trusts none of them, writes each as one escaped, tagged line, at a
bounded rate."""

import fcntl
import json
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from fingerd import limits
from fingerd.process.logformat import F_SETPIPE_SZ, MAX_RECORD_BYTES, clean
from fingerd.process.parent.logrelay import LogRelay
from fingerd.process.worker.logpipe import PipeHandler
from tests.support import ROOT
from tests.support.polling import wait_until

#: What the parent's log format (logsetup) makes of a worker's line.
WORKER_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fingerd\[\d+\]: "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) worker\[(\d+)\]: (.*)")
DROP_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fingerd\[\d+\]: WARNING "
                       r"worker (\d+): (\d+) log lines dropped \(rate limit\)")


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelno, record.getMessage()))


def quiet_logger(name):
    """A logger of the test's own, and what it collects."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    collect = Collect()
    logger.handlers = [collect]
    return logger, collect


def relay_all(read_fd, **kw):
    """Every record the parent's side relays from ``read_fd`` until the writer closes,
    without the ``worker[42]: `` tag each has."""
    logger, collect = quiet_logger("test.logrelay")
    kw.setdefault("rate", 1e9)
    kw.setdefault("burst", 1e9)
    relay = LogRelay(read_fd, 42, logger, **kw)
    for _ in range(100_000):
        if not relay.feed():
            break
    tag = "worker[42]: "
    assert all(m.startswith(tag) for _level, m in collect.messages)
    return [(level, m[len(tag):]) for level, m in collect.messages]


def record(message, level=logging.INFO):
    return logging.makeLogRecord({"levelno": level, "msg": message})


def test_records_arrive_whole_and_in_order_one_line_each():
    r, w = os.pipe()
    handler = PipeHandler(w)
    for i in range(50):
        handler.handle(record(f"line {i}\nwith a second line"))
    handler.close()
    os.close(w)
    try:
        assert relay_all(r) == [(logging.INFO, f"line {i}\\nwith a second line")
                                for i in range(50)]
    finally:
        os.close(r)


def test_a_parent_that_does_not_read_never_blocks_the_worker_and_losses_are_told():
    r, w = os.pipe()
    handler = PipeHandler(w, capacity=8)
    big = "x" * 8000
    done = threading.Event()

    def flood():
        for i in range(2000):
            handler.handle(record(f"{i} {big}"))
        done.set()

    worker = threading.Thread(target=flood, daemon=True)
    worker.start()
    worker.join(30)
    assert done.is_set(), "logging blocked on a full pipe"
    drained = []
    reader = threading.Thread(target=lambda: drained.extend(relay_all(r)), daemon=True)
    reader.start()
    handler.handle(record("after the flood"))
    handler.close()
    os.close(w)
    reader.join(30)
    os.close(r)
    notices = [m for level, m in drained if "log records dropped" in m]
    lost = sum(int(m.split()[0]) for m in notices)
    kept = [m for _level, m in drained
            if re.fullmatch(r"\d+ x+ \[\.\.\. \d+ characters cut \.\.\.\] x+", m)
            or m == "after the flood"]
    assert lost > 0 and lost + len(kept) == 2001, "every record relayed or counted"
    assert len(notices) < lost, "one notice a run of losses, not one a record"


def test_a_long_traceback_keeps_the_exception_raised_at_its_end():
    """Past what a record carries, a traceback keeps its beginning and its end, where
    the exception actually raised is named, through the worker's cut and the parent's."""
    r, w = os.pipe()
    handler = PipeHandler(w)
    try:
        try:
            raise ValueError("v" * 2 * MAX_RECORD_BYTES)
        except ValueError as cause:
            raise RuntimeError("the exception actually raised") from cause
    except RuntimeError:
        handler.handle(logging.makeLogRecord({"levelno": logging.ERROR, "exc_info":
                                              sys.exc_info(), "msg": "internal error"}))
    handler.close()
    os.close(w)
    try:
        [(level, message)] = relay_all(r)
    finally:
        os.close(r)
    assert level == logging.ERROR
    assert message.startswith("internal error\\nTraceback (most recent call last):")
    assert message.endswith("\\nRuntimeError: the exception actually raised")


def test_clean_makes_any_text_one_bounded_printable_line():
    assert clean("a\nb\r\tc\x1b[2J\x7f\x85\u202e\u2028\u200b\ufeff\ud800\U000e0001 é\\") == \
        "a\\nb\\r\\tc\\x1b[2J\\x7f\\x85\\u202e\\u2028\\u200b\\ufeff\\ud800\\U000e0001 é\\"
    text = "".join(chr(c) for c in range(0x110000) if c % 7 == 0)
    out = clean(text)
    assert out.isprintable() and len(out) <= limits.MAX_WORKER_LOG_CHARS
    long = "BEGIN" + "y" * 100_000 + "END"
    out = clean(long)
    assert out.startswith("BEGINyyy") and out.endswith("yyyEND")
    assert len(out) <= limits.MAX_WORKER_LOG_CHARS
    cut = int(re.search(r"\[\.\.\. (\d+) characters cut \.\.\.\]", out).group(1))
    assert cut == len(long) - (len(out) - len(f" [... {cut} characters cut ...] "))
    assert clean("access service=finger user=\"a\\x1b\"") == "access service=finger user=\"a\\x1b\""


def hostile_lines():
    """What a hostile worker may write to its log pipe, raw: no PipeHandler in between."""
    lines = [
        {"level": 50, "message": "ok\n2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root "
                                 "password changed by admin"},
        {"level": 20, "message": "worker 1 ready"},
        {"level": 999, "message": "level 999"},
        {"level": -5, "message": "level -5"},
        {"level": "50", "message": "level as a string"},
        {"level": 50.0, "message": "level as a float"},
        {"level": True, "message": "level as a boolean"},
        {"level": 25, "message": "level between"},
        {"level": 20, "message": "%s %(asctime)s %d %%"},
        {"level": 20, "message": "fields", "args": [1], "name": "fingerd", "process": 1,
         "levelname": "CRITICAL", "exc_info": "x", "msg": "forged"},
        {"level": 20, "message": "\x1b[2J\x1b]0;title\x07\r\u202eesrever\u2028\x00"},
        {"level": 20, "message": "\ud800 a lone surrogate"},
        {"level": 20, "message": ["not", "a", "string"]},
        {"level": 20, "message": "z" * 20_000},
        {"level": 20, "message": "longer than the parent keeps of a line" * 10_000},
    ]
    raw = [(json.dumps(item) + "\n").encode() for item in lines]
    raw += [b"not json at all \xff\xfe\x1b[31m\n", b"\n", b"[" * 50_000 + b"\n",
            b'{"level": 20, "message": "' + b"9" * 10 + b'", "level": 1e999}\n',
            b'{"level": 20}\n', b"null\n", b"[1, 2]\n"]
    return raw


def log_to(path):
    """A logger writing what logsetup's file handler writes, to ``path``."""
    from fingerd import logsetup
    logger, _ = quiet_logger("test.logrelay.file")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(logsetup.LOG_FORMAT))
    logger.handlers = [handler]
    return logger, handler


def test_forged_odd_and_oversized_records_become_tagged_escaped_lines(tmp_path):
    path = tmp_path / "log"
    logger, handler = log_to(path)
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: [os.write(w, line) for line in hostile_lines()]
                              and os.close(w), daemon=True)
    writer.start()
    relay = LogRelay(r, 4242, logger, notices=logger)
    for _ in range(10_000):
        if not relay.feed():
            break
    writer.join(10)
    os.close(r)
    handler.close()
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) == len(hostile_lines()), "one line a record, the empty one too"
    parsed = []
    for line in lines:
        match = WORKER_LINE.fullmatch(line)
        assert match, f"not a tagged worker line: {line!r}"
        assert match.group(2) == "4242"
        assert len(match.group(3)) <= limits.MAX_WORKER_LOG_CHARS
        assert match.group(3).isprintable()
        parsed.append((match.group(1), match.group(3)))
    by_message = dict((m, level) for level, m in parsed)
    assert by_message["ok\\n2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root password "
                      "changed by admin"] == "CRITICAL"
    assert by_message["worker 1 ready"] == "INFO"
    for odd in ("level 999", "level -5", "level as a string", "level as a float",
                "level as a boolean", "level between"):
        assert by_message[odd] == "WARNING", odd
    assert by_message["%s %(asctime)s %d %%"] == "INFO", "no interpolation"
    assert by_message["fields"] == "INFO", "no field of the worker's but level and message"
    assert "forged" not in text
    assert "\\x1b[2J\\x1b]0;title\\x07\\r\\u202eesrever\\u2028\\x00" in by_message
    assert "\\ud800 a lone surrogate" in by_message
    assert by_message["9999999999"] == "WARNING", "a level of infinity"
    assert sum(1 for _level, m in parsed if m.startswith("unreadable log line: ")) == 8
    assert "characters cut" in [m for _l, m in parsed if m.startswith("zzz")][0]
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert relay.last_error == "ok\\n2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root " \
                               "password changed by admin".split("\\n")[0]


def test_lines_over_the_rate_are_dropped_and_counted_in_one_later_line():
    logger, collect = quiet_logger("test.logrelay.rate")
    now = [100.0]
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, rate=10, burst=20, clock=lambda: now[0], notices=logger)
    line = (json.dumps({"level": 20, "message": "flood"}) + "\n").encode()
    big = (json.dumps({"level": 20, "message": "b" * 2000}) + "\n").encode()
    flood = (logging.INFO, "worker[42]: flood")
    os.write(w, line * 100)
    relay.feed()
    assert collect.messages == [flood] * 20
    now[0] += 1.0  # ten tokens back: the next line is preceded by the count
    os.write(w, line * 3)
    relay.feed()
    assert collect.messages[20:] == [
        (logging.WARNING, "worker 42: 80 log lines dropped (rate limit)")] + [flood] * 3
    # Seven tokens left; a line of 2000 bytes costs 8 (one a 256 bytes begun).
    os.write(w, big * 10)
    relay.feed()
    now[0] += 1.0
    os.write(w, line)
    relay.feed()
    assert collect.messages[-1] == flood, "a second count waits DROP_NOTICE_INTERVAL..."
    os.close(w)
    assert relay.feed() is False
    assert collect.messages[-1] == (logging.WARNING,
                                    "worker 42: 10 log lines dropped (rate limit)"), \
        "...or the end of the pipe"
    assert sum(1 for _l, m in collect.messages if "bbb" in m) == 0
    os.close(r)


def test_records_of_changes_have_a_ration_of_their_own():
    """A worker's record of a change (a set, with backend = redis) is not dropped with a
    flood of others; one marking every record so is rationed all the same."""
    logger, collect = quiet_logger("test.logrelay.changes")
    r, w = os.pipe()
    handler = PipeHandler(w)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for n in range(50):
        handler.handle(record(f"refused {n}"))
    change = record("setter: 127.0.0.1 (uid 0, root) set the status of alice")
    change.change = True
    handler.handle(change)
    handler.close()
    os.close(w)
    relay = LogRelay(r, 42, logger, rate=1, burst=10, clock=lambda: 0.0, notices=logger)
    while relay.feed():
        pass
    os.close(r)
    messages = [m for _l, m in collect.messages]
    assert messages == [f"worker[42]: refused {n}" for n in range(10)] + [
        "worker 42: 40 log lines dropped (rate limit)",
        "worker[42]: setter: 127.0.0.1 (uid 0, root) set the status of alice"]
    r, w = os.pipe()
    os.write(w, (json.dumps({"level": 20, "message": "forged", "change": True}) + "\n"
                 ).encode() * 30)
    os.close(w)
    collect.messages.clear()
    relay = LogRelay(r, 42, logger, rate=1, burst=10, clock=lambda: 0.0, notices=logger)
    while relay.feed():
        pass
    os.close(r)
    assert [m for _l, m in collect.messages] == ["worker[42]: forged"] * 10 + [
        "worker 42: 20 log lines dropped (rate limit)"]


def test_a_bigger_line_costs_more():
    logger, collect = quiet_logger("test.logrelay.cost")
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, rate=1, burst=20, clock=lambda: 0.0, notices=logger)
    os.write(w, (json.dumps({"level": 20, "message": "b" * 2000}) + "\n").encode() * 10)
    os.close(w)
    while relay.feed():
        pass
    assert [m[:15] for _l, m in collect.messages] == ["worker[42]: bbb"] * 2 + [
        "worker 42: 8 lo"]
    os.close(r)


def test_a_line_longer_than_the_log_keeps_costs_all_its_bytes():
    """The parent reads the whole line before it cuts the message: 25,000 bytes cost 98
    tokens, though 2048 characters are written."""
    logger, collect = quiet_logger("test.logrelay.long")
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, rate=1, burst=100, clock=lambda: 0.0, notices=logger)
    line = (json.dumps({"level": 20, "message": "c" * 24_970}) + "\n").encode()
    assert len(line) // limits.WORKER_LOG_TOKEN_BYTES == 97
    os.write(w, line * 2)
    os.close(w)
    while relay.feed():
        pass
    assert [m[:15] for _l, m in collect.messages] == ["worker[42]: ccc", "worker 42: 1 lo"]
    os.close(r)


def test_each_turn_reads_a_bounded_slice_of_the_pipe():
    logger, collect = quiet_logger("test.logrelay.slice")
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4 * limits.WORKER_LOG_READ_BYTES)
    os.set_blocking(w, False)
    written = 0
    try:
        while True:
            written += os.write(w, b"\n" * 4096)
    except BlockingIOError:
        pass
    assert written > limits.WORKER_LOG_READ_BYTES
    relay = LogRelay(r, 42, logger, notices=logger)
    relay.feed()
    left = struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0" * 4))[0]
    assert left == written - limits.WORKER_LOG_READ_BYTES
    assert len(collect.messages) <= limits.WORKER_LOG_BURST
    os.close(w)
    os.close(r)


def test_the_access_log_raises_the_rate():
    class Config:
        access_log = True
    fast = LogRelay.for_config(Config(), -1, 1)
    slow = LogRelay.for_config(None, -1, 1)
    assert fast._bucket.rate == limits.WORKER_LOG_RATE_ACCESS_LOG
    assert slow._bucket.rate == limits.WORKER_LOG_RATE


HOSTILE_PARENT = r"""
import json, os, signal, sys
from fingerd import logsetup
from fingerd.process.channel import channel
from fingerd.process.parent.forking import ForkedWorkers
from fingerd.process.exits_and_signals import HANDLED_SIGNALS
from fingerd.process.parent.supervisor import Supervisor

FORGED = [{"level": 50, "message": "x\n2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root "
                                   "password changed by admin"},
          {"level": 999, "message": "level 999"},
          {"level": 20, "message": "worker 1 ready"}]
FLOOD = (json.dumps({"level": 50, "message": "F\n" * 8000}) + "\n").encode() * 8


class HostileWorkers(ForkedWorkers):
    '''Forks a worker body that floods its log pipe with forged and oversized records.'''

    def spawn(self, restarts, strict=False):
        parent_end, worker_end = channel()
        log_r, log_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            parent_end.close()
            os.close(log_r)
            for item in FORGED:
                os.write(log_w, (json.dumps(item) + "\n").encode())
            worker_end.send(b'{"op": "ready"}')
            while True:
                os.write(log_w, FLOOD)
        worker_end.close()
        os.close(log_w)
        os.set_blocking(log_r, False)
        return pid, parent_end, log_r


handler = logsetup.configure(sys.argv[1], False)
signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
sys.exit(Supervisor(None, {}, HostileWorkers(None, None, {}), handler).run())
"""


def test_a_flooding_worker_gets_a_bounded_log_of_tagged_lines_and_a_drop_count(tmp_path):
    """The review's 257 MB in 3 s: now a few hundred kilobytes, each line the worker's."""
    log_file = tmp_path / "fingerd.log"
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", HOSTILE_PARENT, str(log_file)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: log_file.exists() and "worker 1 ready" in log_file.read_text(),
                   what="the forged lines")
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        proc.wait(10)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    flooded = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert took < 2.0, f"TERM took {took:.1f} s"
    # A token pays for at most 256 bytes of the line read; the line written adds its
    # date, pid and tag.
    size = log_file.stat().st_size
    tokens = limits.WORKER_LOG_BURST + flooded * limits.WORKER_LOG_RATE
    assert size < tokens * 300, f"{size} bytes of log in {flooded:.1f} s"
    lines = log_file.read_text().splitlines()
    own = [line for line in lines if not WORKER_LINE.fullmatch(line)]
    drops = [DROP_LINE.fullmatch(line) for line in own if DROP_LINE.fullmatch(line)]
    assert drops and sum(int(m.group(2)) for m in drops) > 1000
    worker_pid = drops[0].group(1)
    assert all(re.search(r"fingerd\[\d+\]: (INFO|ERROR) (fingerd|started worker|worker "
                         rf"{worker_pid} (ready|killed|exited)|stopping|stopped)", line)
               or DROP_LINE.fullmatch(line) for line in own), own
    assert len(drops) <= 3, "one count a run of losses, not one a line"
    worker = [WORKER_LINE.fullmatch(line).groups() for line in lines
              if WORKER_LINE.fullmatch(line)]
    assert {pid for _level, pid, _m in worker} == {worker_pid}
    assert ("WARNING", worker_pid, "level 999") in worker
    assert ("INFO", worker_pid, "worker 1 ready") in worker
    assert ("CRITICAL", worker_pid, "x\\n2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root "
                                    "password changed by admin") in worker
    assert all(len(m) <= limits.MAX_WORKER_LOG_CHARS for _l, _p, m in worker)
