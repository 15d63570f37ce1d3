"""The log file fingerd writes (docs/guide.md, "Metrics and logs")."""

import errno
import io
import logging
import os
import socket
import stat
import subprocess
import sys

from fingerd import logsetup
from tests.support import ROOT
from tests.support.markers import needs_root, needs_tool
from tests.support.polling import wait_until


def write(handler, message):
    handler.handle(logging.LogRecord("fingerd", logging.WARNING, __file__, 1, message, (),
                                     None))


def test_a_log_file_it_creates_is_readable_by_its_group_alone(tmp_path):
    path = tmp_path / "fingerd.log"
    old = os.umask(0o022)
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


def test_a_log_file_that_cannot_be_written_costs_lines_and_is_said_once(tmp_path, capsys):
    path = tmp_path / "fingerd.log"
    handler = logsetup.LogFileHandler(str(path))
    handler.setFormatter(logging.Formatter(logsetup.LOG_FORMAT))
    opened = handler.stream
    disk = FillingUp(opened.fileno())
    handler.stream = io.TextIOWrapper(io.BufferedWriter(disk, buffer_size=64))
    try:
        for n in range(5):
            write(handler, f"lost {n}")
        assert capsys.readouterr().err == (
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
        assert capsys.readouterr().err == ""
    finally:
        handler.close()
        opened.close()


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
