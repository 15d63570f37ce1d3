"""A value far too large to be a status, written into the shared hash by anyone who can
write Redis (CONTRACT section 11): skipped without being read into the worker whole."""

import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.markers import needs_tool
from tests.support.polling import wait_until
from tests.support.procfs import proc_status, worker_of

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

#: The poisoned value: large enough that reading it shows in the worker's peak memory.
POISON_BYTES = 64 * 1024 * 1024
#: What the worker's peak may grow by while it skips the value (it holds no copy).
GROWTH_BOUND_KIB = 16 * 1024
#: Full reads the worker does with the value in the hash before its peak is measured.
FULL_READS = 3


def peak_kib(pid):
    """The peak resident set of ``pid`` so far (VmHWM), in KiB."""
    return int(proc_status(pid)["VmHWM"].split()[0])


def test_a_huge_value_is_skipped_by_hints_and_full_reads_without_being_read(
        make_daemon, redis_server):
    d = make_daemon(fingerd__reload_interval="0.3", store__backend="redis",
                    store__redis_url=redis_server.url, store__redis_prefix="poison").start()
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        direct.hset("poison:users", "alice", "Still here")
        wait_until(lambda: d.finger(b"alice\r\n") == b"Still here\r\n", what="alice served")
        worker = worker_of(d.proc.pid)
        before = peak_kib(worker)
        direct.hset("poison:users", "mallory", b"x" * POISON_BYTES)
        direct.publish("poison:changes", "mallory")
        wait_until(lambda: "'mallory' skipped" in d.log(), what="the hinted value skipped")
        reads = d.metric("fingerd_reloads_total", outcome="success")
        wait_until(lambda: d.metric("fingerd_reloads_total", outcome="success")
                   >= reads + FULL_READS, what=f"{FULL_READS} full reads")
        growth = peak_kib(worker) - before
        assert growth < GROWTH_BOUND_KIB, (
            f"worker peak grew {growth} KiB, from {before} KiB, with a "
            f"{POISON_BYTES >> 20} MiB value in the hash")
        assert d.finger(b"alice\r\n") == b"Still here\r\n"
        assert d.finger(b"mallory\r\n") == b"No such user\r\n"
        assert d.log().count("'mallory' skipped") == 1, "once per field and value"
        exported = subprocess.run(
            [sys.executable, "-m", "fingerd.ctl", "-c", d.config_file, "export"], cwd=ROOT,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
        assert exported.stdout == "alice:Still here\n"
        assert (f"'mallory' left out: status longer than 256 bytes ({POISON_BYTES} bytes, "
                f"not read)") in exported.stderr
        direct.hset("poison:users", "mallory", b"y" * (POISON_BYTES + 1))
        direct.publish("poison:changes", "mallory")
        wait_until(lambda: d.log().count("'mallory' skipped") == 2,
                   what="a new value skipped and said again")
    finally:
        direct.close()
    assert worker_of(d.proc.pid) == worker, "the same worker throughout"
