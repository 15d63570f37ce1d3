"""Where fingerd logs and how each destination is written: the log file, standard
error, syslog (logsetup, loghandlers; docs/guide.md, "Metrics and logs")."""

import ast
import contextlib
import errno
import fcntl
import io
import logging
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import termios

import pytest

from fingerd import loghandlers, logsetup
from fingerd.loghandlers import StderrHandler
from fingerd.process.parent.monitor import HEARTBEAT_TIMEOUT
from tests.support import ROOT
from tests.support.full_fs import fill
from tests.support.markers import needs_root, needs_tool
from tests.support.polling import during, wait_until
from tests.support.procfs import worker_of

#: A line of the log in its plain format.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fingerd\[\d+\]: "
                      r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S")


def write(handler, message):
    handler.handle(logging.LogRecord("fingerd", logging.WARNING, __file__, 1, message, (),
                                     None))


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "UMask0077"])
def test_a_log_file_it_creates_is_readable_by_its_group_alone(tmp_path, umask):
    """Whatever the umask: the shipped fingerd.service sets UMask=0077, and Debian's
    log files are 0640 (the package's postinst and logrotate make it so too)."""
    path = tmp_path / "fingerd.log"
    old = os.umask(umask)
    handler = logsetup.LogFileHandler(str(path))
    try:
        write(handler, "first line")
        os.rename(path, str(path) + ".1")
        handler.reopenIfNeeded()
        write(handler, "after the rotation")
    finally:
        os.umask(old)
        handler.close()
    assert stat.S_IMODE(os.stat(str(path) + ".1").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert "after the rotation" in path.read_text()
    assert "first line" not in path.read_text()


class FillingUp(io.RawIOBase):
    """A log file's descriptor on a file system that is full while ``full`` is set."""

    def __init__(self, fd):
        super().__init__()
        self.fd = fd
        self.full = True

    def writable(self):
        return True

    def write(self, data):
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(self.fd, data)


@contextlib.contextmanager
def on_a_full_disk(handler):
    """``handler`` writing to a file system that is full (the FillingUp it yields) until
    told otherwise; the handler closed after."""
    opened = handler.stream
    disk = FillingUp(opened.fileno())
    handler.stream = io.TextIOWrapper(io.BufferedWriter(disk, buffer_size=64))
    try:
        yield disk
    finally:
        disk.full = False
        handler.close()
        opened.close()


def test_a_log_file_that_cannot_be_written_costs_lines_and_is_said_once(tmp_path, capfd):
    path = tmp_path / "fingerd.log"
    handler = logsetup.LogFileHandler(str(path))
    handler.setFormatter(logging.Formatter(logsetup.LOG_FORMAT))
    with on_a_full_disk(handler) as disk:
        for n in range(5):
            write(handler, f"lost {n}")
        assert capfd.readouterr().err == (
            f"fingerd: cannot write log file {path}: No space left on device; lines may be "
            f"lost until it can be written\n")
        disk.full = False
        write(handler, "written again")
        lines = path.read_text().splitlines()
        assert lines[-2].endswith("WARNING written again")
        assert lines[-1].endswith("WARNING this log file could not be written for a while "
                                  "(No space left on device): lines of that time may be "
                                  "missing")
        write(handler, "and on")
        assert path.read_text().splitlines()[-1].endswith("WARNING and on")
        assert capfd.readouterr().err == ""


def test_a_detached_daemon_says_its_log_file_cannot_be_written_in_syslog(tmp_path, capfd,
                                                                          monkeypatch):
    """Detached, standard error is /dev/null: the first failure of the log file is said
    to syslog, once, never waited for."""
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "syslog"))
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "syslog"))
    path = tmp_path / "fingerd.log"
    handler = logsetup.destination(str(path), foreground=False)
    with on_a_full_disk(handler), syslog:
        for n in range(5):
            write(handler, f"lost {n}")
        syslog.setblocking(False)
        said = []
        for _ in range(10):
            try:
                said.append(syslog.recv(65536))
            except BlockingIOError:
                break
        assert said == [b"<27>fingerd[%d]: cannot write log file %s: No space left on "
                        b"device; lines may be lost until it can be written\0"
                        % (os.getpid(), bytes(path))]
        assert capfd.readouterr().err == ""


def held_files():
    """The paths of the files this process holds open, as /proc shows them."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return held


def test_a_log_file_removed_while_its_disk_is_full_is_let_go_and_made_again(small_fs):
    """An operator removes the log file to free a full disk: the reopen (SIGUSR1) closes
    it, though a line it could not write waits for it, so that its space comes back,
    and makes a new one, which says that lines may be missing."""
    path = small_fs / "fingerd.log"
    path.write_bytes(b"an old line\n" * (25 * 4096 // 12))  # whole pages: no room left
    handler = logsetup.LogFileHandler(str(path))
    handler.setFormatter(logging.Formatter(logsetup.LOG_FORMAT))
    fill(small_fs)
    try:
        write(handler, "lost to the full disk")
        assert "lost to the full disk" not in path.read_text()
        os.unlink(path)
        loghandlers.reopen(handler)
        assert path.exists()
        assert f"{path} (deleted)" not in held_files()
        write(handler, "written again")
    finally:
        handler.close()
    lines = path.read_text().splitlines()
    assert lines[0].endswith("WARNING written again")
    assert lines[1].endswith("WARNING this log file could not be written for a while (No "
                             "space left on device): lines of that time may be missing")


def test_an_existing_log_file_keeps_its_mode(tmp_path):
    path = tmp_path / "fingerd.log"
    path.write_text("")
    os.chmod(path, 0o600)
    handler = logsetup.LogFileHandler(str(path))
    try:
        write(handler, "a line")
    finally:
        handler.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "a line" in path.read_text()


def test_journald_lines_carry_their_priority_and_a_record_stays_one_line(make_daemon):
    d = make_daemon()
    open(d.log_file, "ab").close()
    st = os.stat(d.log_file)
    stream = f"{st.st_dev}:{st.st_ino}"
    d.start(preexec=lambda: os.environ.__setitem__("JOURNAL_STREAM", stream))
    with open(d.users_file, "ab") as f:
        f.write(b"first bad line\nsecond bad line\n")
    wait_until(lambda: "users file rejected" in d.log(), what="the reload failure")
    lines = d.log().splitlines()
    assert any(line.startswith("<6>INFO fingerd ") for line in lines), lines[:3]
    rejected = [line for line in lines if "users file rejected" in line]
    assert len(rejected) == 1 and rejected[0].startswith("<3>ERROR ")
    assert ":3: expected user:status\\n" in rejected[0] and ":4: expected user:status" in \
        rejected[0], "the record's lines are one entry"


def test_without_the_journal_stderr_keeps_the_plain_format(make_daemon):
    d = make_daemon().start(preexec=lambda: os.environ.__setitem__("JOURNAL_STREAM", "1:1"))
    assert d.log().splitlines()[0].split(" ", 2)[2].startswith("fingerd[")
    assert "<6>" not in d.log()


@needs_root
@needs_tool("unshare", "util-linux")
def test_detached_without_syslog_or_log_file_refuses_to_start_and_says_why(make_daemon):
    d = make_daemon()
    hide_syslog = ("if [ -e /dev/log ]; then mount --bind /dev/null /dev/log; fi; "
                   f"exec {sys.executable} -m fingerd -c {d.config_file}")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             hide_syslog], cwd=ROOT, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("fingerd: cannot log to syslog: /dev/log: ")
    assert "set log_file in [fingerd], or run in the foreground with -n" in result.stderr
    assert not os.path.exists(d.pidfile)
    with socket.socket() as again:
        again.bind(("127.0.0.1", d.finger_port))


def test_before_the_daemon_logs_a_record_is_lost_only_when_no_destination_opens(tmp_path,
                                                                               capsys):
    """A log_file that cannot be opened, in the foreground: standard error alone has the
    reason; nothing is raised or printed by logging."""
    unopenable = str(tmp_path / "missing" / "fingerd.log")
    handler = logsetup.StartupHandler(unopenable, detached=False)
    write(handler, "startup failed: somewhere")
    assert not os.path.exists(os.path.dirname(unopenable))
    assert capsys.readouterr().err == ""
    reachable = tmp_path / "fingerd.log"
    write(logsetup.StartupHandler(str(reachable), detached=True), "startup failed: here")
    assert reachable.read_text().endswith(" WARNING startup failed: here\n")
    assert stat.S_IMODE(os.stat(reachable).st_mode) == 0o640


def unread(fd):
    """Bytes waiting in the pipe whose reading end is ``fd``."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def read_until(fd, text, seen=b""):
    """What the pipe ``fd`` (non-blocking) gives, after ``seen``, until it holds ``text``."""
    got = [seen]

    def holds():
        try:
            got.append(os.read(fd, 1 << 20))
        except BlockingIOError:
            pass
        return text in b"".join(got)
    wait_until(holds, what=f"{text!r} on standard error")
    return b"".join(got)


def test_standard_error_nobody_reads_never_stops_the_parent(make_daemon):
    """In the foreground with no log_file, standard error a pipe nobody reads for longer
    than a worker may stay silent: sets are answered all along and the worker is not
    taken for wedged; once the pipe is read, the lines kept meanwhile come, whole."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    d = make_daemon(fingerd__access_log="yes")
    try:
        d.start(stderr=w)
    finally:
        os.close(w)
    try:
        worker = worker_of(d.proc.pid)
        capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)

        def stderr_full():
            for _ in range(50):
                assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
            return unread(r) > capacity // 2
        wait_until(stderr_full, timeout=60, what="standard error to fill up")
        for n, _ in enumerate(during(HEARTBEAT_TIMEOUT + 1, interval=0.5)):
            assert d.setter(b"alice\r\nbusy %d\r\n" % n, timeout=5) == b"OK\r\n"
            assert d.finger(b"alice\r\n") == b"busy %d\r\n" % n
        assert d.setter(b"bob\r\nback\r\n") == b"OK\r\n"
        written = read_until(r, b"set the status of bob")
    finally:
        os.close(r)
    assert worker_of(d.proc.pid) == worker
    lines = written.decode().splitlines()
    assert [line for line in lines if not LOG_LINE.match(line)] == []
    assert not [line for line in lines if "gave no sign of life" in line]


def read_pipe(fd, handler):
    """All that ``handler`` writes to the pipe whose reading end is ``fd``, read as a
    reader that came back would, the parent's loop turning meanwhile."""
    got = []
    for _ in range(10_000):
        handler.flush()
        try:
            got.append(os.read(fd, 1 << 20))
        except BlockingIOError:
            return b"".join(got)
    raise AssertionError("the pipe never ran dry")


def test_standard_error_keeps_a_bounded_backlog_and_says_how_many_lines_it_dropped():
    r, w = os.pipe()
    os.set_blocking(r, False)
    handler = StderrHandler(w, backlog=100_000)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for n in range(5000):
            write(handler, f"line {n} " + "x" * 100)
        assert unread(r) > 0 and handler.dropped > 0
        lines = read_pipe(r, handler).decode().splitlines()
        kept = len(lines) - 1
        assert lines[:kept] == [f"line {n} " + "x" * 100 for n in range(kept)]
        assert lines[kept] == (f"{5000 - kept} log lines dropped: standard error did not "
                               f"take them in time")
        write(handler, "after")
        assert read_pipe(r, handler) == b"after\n"
    finally:
        handler.close()
        os.close(r)
        os.close(w)


SYSLOG_FLOOD = """
import logging, socket, sys
from fingerd import logsetup
syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
syslog.bind(sys.argv[1])
logsetup.SYSLOG_SOCKET = sys.argv[1]
logsetup.configure("", foreground=False)
log = logging.getLogger("fingerd")
for n in range(3000):
    log.info("record %d", n)
syslog.setblocking(False)
got = []
try:
    while True:
        got.append(syslog.recv(65536))
except BlockingIOError:
    pass
log.info("after")
got += [syslog.recv(65536), syslog.recv(65536)]
sys.stdout.write(repr(got))
"""


def test_syslog_that_takes_no_more_costs_records_counted_never_a_wait(tmp_path):
    """A syslog that stops reading /dev/log: the records it cannot take at once are
    dropped, and once it takes them again a record says how many."""
    path = str(tmp_path / "log")
    result = subprocess.run([sys.executable, "-c", SYSLOG_FLOOD, path], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    *records, dropped, after = ast.literal_eval(result.stdout)
    tag = re.match(rb"<30>(fingerd\[\d+\]: )record 0\0", records[0]).group(1)
    assert records == [b"<30>%srecord %d\0" % (tag, n) for n in range(len(records))]
    assert dropped == (b"<28>%s%d log lines dropped: syslog did not take them in time\0"
                       % (tag, 3000 - len(records)))
    assert after == b"<30>%safter\0" % tag
