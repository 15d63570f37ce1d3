"""One fingerd with ``[store] backend = redis``, and fingerd-ctl import and export."""

import datetime
import os
import signal
import subprocess
import sys
from urllib.parse import quote

import pytest

from fingerd.ctl import EXIT_NO_PERMISSION
from fingerd.limits import MAX_STORE_ENTRIES
from tests.support import ROOT
from tests.support.engines import RedisServer
from tests.support.markers import needs_root, needs_tool
from tests.support.polling import wait_until
from tests.support.procfs import worker_of
from tests.support.resp_relay import ExecDelayRelay
from tests.support.set_floods import SETS_IN_A_FLOOD, refused_requests_flooding

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

#: Seconds a restarted worker may take to be ready, its read of Redis included: well
#: under the second table.FREE_WAIT would add.
READY_WITHIN = 0.5


def run(module, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


@pytest.fixture
def direct(redis_server):
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.hset("dir:users", mapping={"alice": "From Redis", "bob": "Also from Redis"})
    yield client
    client.close()


@pytest.fixture
def configured(make_daemon, redis_server, direct):
    """A daemon whose users file is invalid: with backend = redis it is never read."""
    return make_daemon(users=b"not a users file\n", store__backend="redis",
                       store__redis_url=redis_server.url, store__redis_prefix="dir")


def test_statuses_come_from_redis_and_the_users_file_is_not_read(configured, direct):
    d = configured.start()
    assert d.finger(b"alice\r\n") == b"From Redis\r\n"
    assert d.metric("fingerd_users") == 2
    assert d.metric("fingerd_store_up") == 1
    assert d.setter(b"carol\r\nSet through the setter\r\n") == b"OK\r\n"
    assert direct.hget("dir:users", "carol") == b"Set through the setter"
    assert d.finger(b"carol\r\n") == b"Set through the setter\r\n"


def test_no_flood_of_refused_requests_drops_the_record_of_a_set(configured):
    """The worker writes Redis and logs the set; the parent rations the record of a
    change apart from the worker's other lines, which a flood makes it drop."""
    d = configured.start()
    with refused_requests_flooding(d):
        for n in range(SETS_IN_A_FLOOD):
            assert d.setter(b"bob\r\nin the flood %d\r\n" % n) == b"OK\r\n"

    def sets():
        return [line for line in d.log().splitlines()
                if "setter: 127.0.0.1 (uid 0, root) set the status of bob" in line]

    wait_until(lambda: len(sets()) >= SETS_IN_A_FLOOD, timeout=10,
               what=f"{SETS_IN_A_FLOOD} sets in the log: {len(sets())} so far")
    assert len(sets()) == SETS_IN_A_FLOOD


def test_check_config_says_the_users_file_is_not_read(configured):
    checked = run("fingerd", "-t", "-c", configured.config_file)
    assert checked.returncode == 0, checked.stderr
    assert "users_file is not read" in checked.stdout
    assert "dir:users" in checked.stdout


def test_a_first_start_without_redis_fails_with_the_reason(make_daemon, ports):
    d = make_daemon(store__backend="redis",
                    store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    started = run("fingerd", "-n", "-c", d.config_file)
    assert started.returncode != 0
    assert "store unavailable" in started.stderr


def test_the_setter_refuses_while_redis_is_down_and_works_when_it_is_back(configured,
                                                                           redis_server):
    d = configured.start()
    redis_server.stop()
    wait_until(lambda: d.metric("fingerd_store_up") == 0, what="fingerd_store_up 0")
    assert d.setter(b"alice\r\nLost\r\n") == b"ERROR store unavailable\r\n"
    assert d.finger(b"alice\r\n") == b"From Redis\r\n"
    redis_server.start()
    wait_until(lambda: d.setter(b"alice\r\nBack\r\n") == b"OK\r\n", what="a set accepted")
    assert d.metric("fingerd_store_up") == 1
    assert d.finger(b"alice\r\n") == b"Back\r\n"
    log = d.log()
    assert log.count("store unavailable: ") == 1 and log.count("store reachable") == 2


def test_a_password_given_as_a_query_option_is_never_shown(make_daemon, ports):
    d = make_daemon(store__backend="redis",
                    store__redis_url=f"redis://127.0.0.1:{ports.take()}/0?password=s3cret")
    checked = run("fingerd", "-t", "-c", d.config_file)
    started = run("fingerd", "-n", "-c", d.config_file)
    exported = ctl(d, "export")
    assert checked.returncode == 0 and started.returncode != 0 and exported.returncode == 1
    assert "/0?password=*** fingerd:users: store unavailable" in started.stderr
    for output in (checked.stdout, checked.stderr, started.stderr, exported.stderr):
        assert "s3cret" not in output, output


@pytest.mark.parametrize("query, message", [
    ("db=x", "query option db: expected a database number, got 'x'"),
    ("socket_timeout=abc", "query option 'socket_timeout' not accepted"),
])
def test_a_query_option_of_the_wrong_kind_is_a_configuration_error(make_daemon, query,
                                                                    message):
    d = make_daemon(store__backend="redis", store__redis_url=f"redis://127.0.0.1/0?{query}")
    with open(d.config_file) as f:
        number = next(n for n, text in enumerate(f, 1) if text.startswith("redis_url"))
    line = f"{d.config_file}:{number}: [store] redis_url: {message}"
    for command in (run("fingerd", "-t", "-c", d.config_file),
                    run("fingerd", "-n", "-c", d.config_file),
                    ctl(d, "export"), ctl(d, "import", d.users_file)):
        assert command.returncode != 0, command
        assert line in command.stdout + command.stderr, command
        assert "Traceback" not in command.stderr, command.stderr


def test_hup_reads_the_whole_hash_again(make_daemon, redis_server, direct):
    d = make_daemon(fingerd__reload_interval="3600", store__backend="redis",
                    store__redis_url=redis_server.url, store__redis_prefix="dir").start()
    direct.hset("dir:users", "carol", "Written without a hint")
    assert d.finger(b"carol\r\n") == b"No such user\r\n"
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.finger(b"carol\r\n") == b"Written without a hint\r\n",
               what="the whole hash read on HUP")


def ctl(d, *args):
    return run("fingerd.ctl", "-c", d.config_file, *args)


def test_import_replaces_the_hash_and_every_fingerd_serves_it(configured, direct, tmp_path):
    d = configured.start()
    good = tmp_path / "good"
    good.write_bytes(b"# new directory\ncarol:Imported\ndave:Also imported\n")
    imported = ctl(d, "import", str(good))
    assert imported.returncode == 0, imported.stderr
    assert "2 users imported" in imported.stdout
    assert direct.hgetall("dir:users") == {b"carol": b"Imported", b"dave": b"Also imported"}
    wait_until(lambda: d.finger(b"alice\r\n") == b"No such user\r\n", what="alice gone")
    assert d.finger(b"carol\r\n") == b"Imported\r\n"


def test_an_invalid_file_is_not_imported(configured, direct, tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"carol:Fine\n-dave:Bad name\n")
    refused = ctl(configured, "import", str(bad))
    assert refused.returncode == 1
    assert f"{bad}:2: invalid user name" in refused.stderr
    assert "nothing imported" in refused.stderr
    assert direct.hgetall("dir:users") == {b"alice": b"From Redis", b"bob": b"Also from Redis"}


def test_an_import_whose_reply_is_lost_says_its_outcome_is_unknown(make_daemon, redis_server,
                                                                  direct, ports, tmp_path):
    """The connection is lost once Redis applied the import: "nothing imported" would
    be false."""
    cut = ExecDelayRelay(ports.take(), redis_server.port, 0, held="cut").start()
    try:
        d = make_daemon(store__backend="redis", store__redis_url=cut.url,
                        store__redis_prefix="dir")
        good = tmp_path / "good"
        good.write_bytes(b"carol:Imported unseen\n")
        unknown = ctl(d, "import", str(good))
    finally:
        cut.stop()
    assert direct.hgetall("dir:users") == {b"carol": b"Imported unseen"}
    assert unknown.returncode == 1
    assert "no reply to the import" in unknown.stderr
    assert (f"whether {good} was imported is unknown; see with: fingerd-ctl export"
            in unknown.stderr)
    assert "nothing imported" not in unknown.stderr
    assert "calling it off failed" not in unknown.stderr, unknown.stderr


def test_a_file_with_more_entries_than_fingerd_reads_from_redis_is_not_imported(
        configured, direct, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"".join(b"u%d:x\n" % i for i in range(MAX_STORE_ENTRIES + 1)))
    refused = ctl(configured, "import", str(big))
    assert refused.returncode == 1
    assert (f"{big}:0: {MAX_STORE_ENTRIES + 1} entries, more than the {MAX_STORE_ENTRIES} "
            f"fingerd reads from Redis") in refused.stderr
    assert f"nothing imported from {big}" in refused.stderr
    assert direct.hgetall("dir:users") == {b"alice": b"From Redis", b"bob": b"Also from Redis"}


def test_export_prints_a_users_file_and_names_what_it_left_out(configured, direct):
    direct.hset("dir:users", "eve", "two\nlines")
    exported = ctl(configured, "export")
    assert exported.stdout == "alice:From Redis\nbob:Also from Redis\n"
    assert "'eve' left out: status contains a control character" in exported.stderr
    assert exported.returncode == 1
    direct.hdel("dir:users", "eve")
    assert ctl(configured, "export").returncode == 0


def test_an_export_to_a_full_disk_fails_saying_so_without_a_traceback(configured):
    with open("/dev/full", "w") as full:
        exported = configured.ctl("export", stdout=full)
    assert (exported.returncode, exported.stderr) == (
        1, "fingerd-ctl: cannot write standard output: No space left on device\n")


def test_import_and_export_need_the_redis_backend(make_daemon):
    d = make_daemon()
    refused = ctl(d, "export")
    assert refused.returncode == 1
    assert "export needs [store] backend = redis" in refused.stderr
    assert os.path.exists(d.users_file)


def test_a_reload_moves_the_statuses_to_redis_and_back(make_daemon, redis_server, direct, ports):
    d = make_daemon().start()
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    d.reconfigure(store__backend="redis", store__redis_url=redis_server.url,
                  store__redis_prefix="dir")
    moved = run("fingerd.ctl", "-c", d.config_file, "reload")
    assert moved.returncode == 0, moved.stderr
    assert d.finger(b"alice\r\n") == b"From Redis\r\n"
    d.reconfigure(store__redis_url=f"redis://127.0.0.1:{ports.take()}/0")
    refused = run("fingerd.ctl", "-c", d.config_file, "reload")
    assert refused.returncode == 1 and "store unavailable" in refused.stderr
    assert d.finger(b"alice\r\n") == b"From Redis\r\n", "the worker serving stays"
    d.reconfigure(store__backend="file")
    back = run("fingerd.ctl", "-c", d.config_file, "reload")
    assert back.returncode == 0, back.stderr
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"


def test_while_redis_is_down_a_reload_applies_and_the_copy_is_served(configured, redis_server):
    """The same server named again: the new worker serves the copy, as the worker
    serving it did, and goes on trying; only another server or prefix it cannot reach
    refuses the reload (test_a_reload_moves_the_statuses_to_redis_and_back)."""
    d = configured.start()
    redis_server.stop()
    wait_until(lambda: d.metric("fingerd_store_up") == 0, what="fingerd_store_up 0")
    d.reconfigure(finger__list_users="yes")
    reloaded = ctl(d, "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "applied" in reloaded.stdout
    wait_until(lambda: "serving the 2 users the previous worker served and retrying"
               in d.log(), what="the new worker saying it serves the copy")
    assert d.finger(b"\r\n") == b"alice: From Redis\r\nbob: Also from Redis\r\n"
    assert d.setter(b"alice\r\nLost\r\n") == b"ERROR store unavailable\r\n"
    redis_server.start()
    wait_until(lambda: d.setter(b"alice\r\nBack\r\n") == b"OK\r\n", what="a set accepted")
    assert d.finger(b"alice\r\n") == b"Back\r\n"


#: A password Redis asks for, and another it is changed to.
PASSWORD, NEW_PASSWORD = "s3cret:/@pass", "n3w%20secret"


@pytest.fixture
def guarded(public_dir, ports, tmp_path):
    """A Redis that asks for PASSWORD, which only root's password file holds; the file,
    in a directory only root reads (pytest's own), so that as root the worker cannot."""
    server = RedisServer(public_dir, ports.take(), "--requirepass", PASSWORD).start()
    client = redis.Redis.from_url(server.url, password=PASSWORD, socket_timeout=5)
    client.hset("dir:users", mapping={"alice": "Behind a password"})
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    yield server, client, secret
    client.close()
    server.stop()


def test_the_password_comes_from_a_file_only_root_reads(make_daemon, guarded):
    server, client, secret = guarded
    d = make_daemon(store__backend="redis", store__redis_url=server.url,
                    store__redis_prefix="dir", store__redis_password_file=str(secret))
    checked = run("fingerd", "-t", "-c", d.config_file)
    assert checked.returncode == 0, checked.stderr
    d.start()
    assert d.finger(b"alice\r\n") == b"Behind a password\r\n"
    assert d.setter(b"carol\r\nSet past a password\r\n") == b"OK\r\n"
    assert client.hget("dir:users", "carol") == b"Set past a password"
    exported = ctl(d, "export")
    assert exported.returncode == 0, exported.stderr
    assert "carol:Set past a password\n" in exported.stdout
    # Changed in Redis and in the file: a reload's worker connects with the new one.
    client.config_set("requirepass", NEW_PASSWORD)
    secret.write_text(NEW_PASSWORD + "\n")
    assert d.ctl("reload").returncode == 0
    assert d.setter(b"carol\r\nSet past the new one\r\n") == b"OK\r\n"
    assert d.finger(b"carol\r\n") == b"Set past the new one\r\n"
    # A file gone refuses the reload, naming it; the worker serving goes on.
    secret.unlink()
    refused = d.ctl("reload")
    assert refused.returncode == 1
    line = f"[store] redis_password_file: {secret}: No such file or directory"
    assert line in refused.stderr and line in d.log()
    assert d.setter(b"carol\r\nStill set\r\n") == b"OK\r\n"
    for output in (checked.stdout, checked.stderr, exported.stderr, refused.stderr, d.log()):
        for password in (PASSWORD, NEW_PASSWORD, quote(PASSWORD, safe=""),
                         quote(NEW_PASSWORD, safe="")):
            assert password not in output


def test_a_wrong_password_fails_the_start_without_showing_it(make_daemon, guarded):
    server, _client, secret = guarded
    secret.write_text("wrong\n")
    d = make_daemon(store__backend="redis", store__redis_url=server.url,
                    store__redis_prefix="dir", store__redis_password_file=str(secret))
    started = run("fingerd", "-n", "-c", d.config_file)
    assert started.returncode != 0
    assert "store unavailable" in started.stderr and "wrong" not in started.stderr


@needs_root
def test_an_account_that_cannot_read_the_password_file_is_told_so(make_daemon, guarded):
    """Here root without the capabilities that pass over a file's permissions, and the
    file another account's (as nobody, this machine's Python finds no redis library)."""
    server, _client, secret = guarded
    os.chown(secret, 65534, 65534)
    d = make_daemon(store__backend="redis", store__redis_url=server.url,
                    store__redis_prefix="dir", store__redis_password_file=str(secret))
    exported = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
         sys.executable, "-m", "fingerd.ctl", "-c", d.config_file, "export"], cwd=ROOT,
        timeout=60, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert exported.returncode == EXIT_NO_PERMISSION, exported.stderr
    assert f"[store] redis_password_file: {secret}: Permission denied" in exported.stderr
    assert exported.stdout == ""


def test_a_password_in_a_configuration_every_account_reads_is_warned_of(make_daemon,
                                                                        redis_server):
    d = make_daemon(store__backend="redis", store__redis_url=redis_server.url + "?password=x")
    os.chmod(d.config_file, 0o644)
    checked = run("fingerd", "-t", "-c", d.config_file)
    assert checked.returncode == 0
    assert "[store] redis_url holds the Redis password, and every account may read" in \
        checked.stderr


def test_a_reload_that_cannot_reach_redis_serves_what_the_old_worker_served_last(
        make_daemon, redis_server, direct):
    """Redis goes on serving the old worker's connections and refuses new ones (the
    account's password changed): the new worker serves the copy, with every status set
    and hinted since the old worker started, not the table it had then."""
    direct.execute_command("ACL", "SETUSER", "fd", "on", ">pw", "~*", "&*", "+@all")
    d = make_daemon(store__backend="redis", store__redis_prefix="dir",
                    store__redis_url=f"redis://fd:pw@127.0.0.1:{redis_server.port}/0").start()
    assert d.setter(b"carol\r\nSet here\r\n") == b"OK\r\n"
    direct.hset("dir:users", "dave", "Set elsewhere")
    direct.publish("dir:changes", "dave")
    direct.hdel("dir:users", "bob")
    direct.publish("dir:changes", "bob")
    wait_until(lambda: d.finger(b"dave\r\n") == b"Set elsewhere\r\n" and
               d.finger(b"bob\r\n") == b"No such user\r\n", what="the hints followed")
    direct.execute_command("ACL", "SETUSER", "fd", "resetpass", ">another")
    reloaded = d.ctl("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    wait_until(lambda: "users the previous worker served" in d.log(),
               what="the new worker serving the copy", timeout=10)
    assert d.finger(b"carol\r\n") == b"Set here\r\n"
    assert d.finger(b"dave\r\n") == b"Set elsewhere\r\n"
    assert d.finger(b"bob\r\n") == b"No such user\r\n"
    assert d.finger(b"alice\r\n") == b"From Redis\r\n"
    assert "serving the 3 users the previous worker served" in d.log()


def test_a_refused_reload_has_the_worker_read_the_hash_again_and_say_so(make_daemon,
                                                                        redis_server, direct):
    d = make_daemon(fingerd__reload_interval="3600", store__backend="redis",
                    store__redis_url=redis_server.url, store__redis_prefix="dir").start()
    direct.hset("dir:users", "carol", "Written without a hint")
    d.reconfigure(fingerd__threads="many")
    refused = ctl(d, "reload")
    assert refused.returncode == 1, refused.stdout
    wait_until(lambda: d.finger(b"carol\r\n") == b"Written without a hint\r\n",
               what="the whole hash read by the worker serving")
    assert f"reading redis://127.0.0.1:{redis_server.port}/0 dir:users again" in d.log()
    assert "users file" not in d.log()


def test_a_worker_restarted_after_a_crash_is_ready_at_once(configured):
    """Its first read of the hash replaces the empty table it began with: that table is
    freed without waiting on the start (table.free_gradually waits up to 1 s for a table
    someone still holds), so clients of a crashed worker wait no longer than for one
    read of Redis."""
    d = configured.start()
    old = worker_of(d.proc.pid)
    os.kill(old, signal.SIGKILL)
    new = worker_of(d.proc.pid, other_than=old)
    wait_until(lambda: f"worker {new} ready" in d.log(), what="the new worker ready")
    times = {}
    for line in d.log().splitlines():
        for event in (f"started worker {new}", f"worker {new} ready"):
            if line.endswith(event):
                times[event] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    took = (times[f"worker {new} ready"] - times[f"started worker {new}"]).total_seconds()
    assert took < READY_WITHIN, f"ready {took:.3f} s after it was started"
