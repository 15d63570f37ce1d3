"""A log file's directory that another account can write (the worker's, say): what that
account puts at the log file's path never makes the root parent write through a
symbolic link, nor wait on a FIFO."""

import os
import shutil
import subprocess

import pytest

from tests.support.daemon import run_fingerd
from tests.support.polling import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the parent runs as root")


def as_nobody(script):
    subprocess.run(["sh", "-c", script], user="nobody", check=True, timeout=30)


def log_directory_of_nobody(public_dir):
    directory = os.path.join(public_dir, "logs")
    os.mkdir(directory, 0o755)
    shutil.chown(directory, "nobody")
    return directory


def said_cannot_write(d):
    return "cannot write log file" in d.log()


def test_a_symbolic_link_another_account_put_there_is_not_written_through(make_daemon,
                                                                           public_dir):
    directory = log_directory_of_nobody(public_dir)
    log_file = os.path.join(directory, "fingerd.log")
    victim = os.path.join(public_dir, "root-only")
    with open(victim, "w") as f:
        f.write("root's own\n")
    os.chmod(victim, 0o600)
    d = make_daemon(fingerd__log_file=log_file, fingerd__access_log="yes",
                    fingerd__log_queries="yes").start()
    as_nobody(f"rm {log_file} && ln -s {victim} {log_file}")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    wait_until(lambda: said_cannot_write(d) or open(victim).read() != "root's own\n",
               what="the parent to write its next line")
    assert open(victim).read() == "root's own\n"
    assert "a symbolic link of uid 65534's, not followed" in d.log()
    as_nobody(f"rm {log_file}")
    assert d.finger(b"bob\r\n") == b"Sleeping\r\n"
    wait_until(lambda: os.path.exists(log_file) and 'user="bob"' in open(log_file).read(),
               what="a new log file")
    assert os.stat(log_file).st_uid == 0
    assert d.stop() == 0


def test_a_fifo_another_account_put_there_never_stops_the_parent(make_daemon, public_dir):
    directory = log_directory_of_nobody(public_dir)
    log_file = os.path.join(directory, "fingerd.log")
    d = make_daemon(fingerd__log_file=log_file, fingerd__access_log="yes").start()
    as_nobody(f"rm {log_file} && mkfifo -m 0666 {log_file}")
    try:
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        wait_until(lambda: said_cannot_write(d), what="the parent to say it cannot write",
                   timeout=10)
        assert "No such device or address" in d.log()
        d.ctl("reopen")
        assert d.finger(b"bob\r\n") == b"Sleeping\r\n"
        assert d.ctl("status").returncode == 0
    finally:
        # An old parent waits in open() for a reader: one comes, so that it can stop.
        reader = os.open(log_file, os.O_RDONLY | os.O_NONBLOCK)
        os.close(reader)
    assert d.stop(timeout=5) == 0


def test_the_check_refuses_what_the_start_would(make_daemon, public_dir):
    directory = log_directory_of_nobody(public_dir)
    log_file = os.path.join(directory, "fingerd.log")
    d = make_daemon(fingerd__log_file=log_file)
    as_nobody(f"ln -s {d.users_file} {log_file}")
    result = run_fingerd("-t", "-c", d.config_file)
    assert result.returncode == 1
    assert (f"[fingerd] log_file: {log_file}: cannot open log file: a symbolic link of uid "
            f"65534's, not followed") in result.stderr
