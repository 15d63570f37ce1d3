"""The user store and its users file, in-process."""

import logging
import os
import subprocess
import sys
import threading

import pytest

from fingerd.finger.sources import FileSource
from fingerd.limits import MAX_USERS_FILE_BYTES
from fingerd.metrics import Metrics
from fingerd.users import fileio, snapshot
from fingerd.users.editing import StoreError
from fingerd.users.snapshot import Snapshot, create
from fingerd.users.store import Fallback, UserStore
from fingerd.users.usersfile import UsersFileError, parse_users
from tests.support import ROOT
from tests.support.users_files import replace_file, users_file_fixture


@pytest.fixture
def metrics():
    return Metrics()


path = users_file_fixture()


@pytest.fixture
def store(path, metrics):
    s = UserStore(path, metrics)
    s.load()
    return s


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_load_reads_the_file(store, metrics):
    assert store.table == {"alice": "Happy", "bob": "Sleeping"}
    assert sample(metrics, "fingerd_users") == 2
    assert sample(metrics, "fingerd_reloads_total", outcome="success") == 1


def test_missing_file_starts_empty_with_a_warning(tmp_path, metrics, caplog):
    store = UserStore(str(tmp_path / "none"), metrics)
    with caplog.at_level(logging.WARNING):
        store.load()
    assert store.table == {}
    assert "no users file" in caplog.text


def test_invalid_file_fails_the_first_load(tmp_path, metrics):
    (tmp_path / "users").write_bytes(b"broken\n")
    with pytest.raises(UsersFileError):
        UserStore(str(tmp_path / "users"), metrics).load()


def test_unchanged_file_is_not_read_again(store):
    assert store.reload() is False


def test_reload_after_rename(store, path):
    replace_file(path, b"carol:New\n")
    assert store.reload() is True
    assert store.table == {"carol": "New"}


def test_reload_after_edit_in_place(store, path):
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"dave:Edited\n")
    assert store.reload() is True
    assert store.table["dave"] == "Edited"


def test_forced_reload_reads_an_unchanged_file(store):
    assert store.reload(force=True) is True


def test_bad_file_keeps_every_entry_and_is_reported_once(store, path, metrics, caplog):
    before = store.table
    replace_file(path, b"alice:ok\nbroken line\n")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert store.reload() is False
    assert store.table == before
    assert sample(metrics, "fingerd_reloads_total", outcome="failure") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{path}:2: expected user:status" in errors[0].getMessage()


def test_fixed_file_is_read_after_a_bad_one(store, path):
    replace_file(path, b"broken\n")
    store.reload()
    replace_file(path, b"alice:fixed\n")
    assert store.reload() is True
    assert store.table == {"alice": "fixed"}


def test_removed_file_keeps_the_table(store, path, metrics):
    os.unlink(path)
    assert store.reload() is False
    assert store.table["alice"] == "Happy"
    assert sample(metrics, "fingerd_reloads_total", outcome="failure") == 1


def test_set_status_edits_the_file_before_publishing(store, path, caplog):
    """And, written by the store itself, is logged by it with its client."""
    with caplog.at_level(logging.INFO, logger="fingerd.users.store"):
        store.set_status("alice", "Away", "127.0.0.1 (uid 0, root)")
    assert open(path, "rb").read() == b"# staff\nalice:Away\nbob:Sleeping\n"
    assert store.table["alice"] == "Away"
    assert [r.getMessage() for r in caplog.records] == [
        "setter: 127.0.0.1 (uid 0, root) set the status of alice"]


def test_set_status_creates_a_user(store, path):
    store.set_status("carol", "Hello", "a test")
    assert parse_users(open(path, "rb").read())["carol"] == "Hello"
    assert store.table["carol"] == "Hello"


def test_set_status_creates_a_missing_file(tmp_path, metrics):
    store = UserStore(str(tmp_path / "users"), metrics)
    store.load()
    store.set_status("alice", "Hi", "a test")
    assert (tmp_path / "users").read_bytes() == b"alice:Hi\n"


def test_own_write_is_not_read_again(store):
    store.set_status("alice", "Away", "a test")
    assert store.reload() is False


def test_set_status_keeps_the_mode(store, path):
    os.chmod(path, 0o640)
    store.set_status("alice", "Away", "a test")
    assert os.stat(path).st_mode & 0o7777 == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's group needs root")
def test_set_status_keeps_the_owner_and_group(store, path):
    # The owner is root: a file another user could write is refused (test_users_file_safety).
    os.chown(path, 0, 65534)
    os.chmod(path, 0o640)
    store.set_status("alice", "Away", "a test")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 65534, 0o640)


def test_set_status_keeps_an_edit_not_yet_reloaded(store, path):
    replace_file(path, b"alice:Happy\nbob:Sleeping\nzed:Added by hand\n")
    store.set_status("alice", "Away", "a test")
    assert store.table == {"alice": "Away", "bob": "Sleeping", "zed": "Added by hand"}


def test_set_status_refuses_to_overwrite_an_invalid_file(store, path):
    replace_file(path, b"broken\n")
    with pytest.raises(StoreError, match="users file on disk has errors"):
        store.set_status("alice", "Away", "a test")
    assert open(path, "rb").read() == b"broken\n"
    assert store.table["alice"] == "Happy"


def test_failed_write_changes_neither_memory_nor_file(store, path, tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(str(tmp_path), os.W_OK):
            pytest.skip("this user can write a read-only directory (root); see the tmpfs test")
        with pytest.raises(StoreError, match="cannot write users file"):
            store.set_status("alice", "Away", "a test")
    finally:
        os.chmod(tmp_path, 0o700)
    assert store.table["alice"] == "Happy"
    assert b"alice:Happy" in open(path, "rb").read()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_concurrent_setters_lose_no_update(store, path):
    def set_many(t):
        for i in range(20):
            store.set_status(f"user{t}_{i}", f"status {t} {i}", "a test")

    threads = [threading.Thread(target=set_many, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    on_disk = parse_users(open(path, "rb").read())
    for t in range(8):
        for i in range(20):
            assert on_disk[f"user{t}_{i}"] == f"status {t} {i}"
            assert store.table[f"user{t}_{i}"] == f"status {t} {i}"


@pytest.fixture
def worker_switch_interval():
    """The worker's GIL switch interval, under which readers and reloads interleave finely."""
    from fingerd.process.worker.main import SWITCH_INTERVAL
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(before)


#: Users in each version of the file: enough that a reader is switched out mid-table.
MANY = 3000

#: What readers do with the table, as the finger service does it, and the set of
#: versions each read saw ("short" for a table seen with entries missing).
READS = {
    "lookup": lambda source: {"found" if source.lookup(f"u{i}", False) else "short"
                              for i in range(0, MANY, 7)},
    "listing": lambda source: (
        {text[-1] for _name, text in lines} if len(lines := list(source.listing())) == MANY
        else {"short"}),
    "len": lambda source: {"whole"} if len(source._store.table) == MANY else {"short"},
}


@pytest.mark.parametrize("read", sorted(READS))
def test_readers_never_see_half_a_table(store, path, worker_switch_interval, read):
    """Whatever a reader does with the table it took, reloads never change it under it."""
    versions = [b"".join(b"u%d:%s\n" % (i, v) for i in range(MANY)) for v in (b"a", b"b")]
    replace_file(path, versions[0])
    store.reload()
    source = FileSource(store)
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            try:
                answers = READS[read](source)
            except RuntimeError as exc:
                answers = {repr(exc)}
            if len(answers) != 1 or answers & {"short", None}:
                seen.append(answers)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for r in readers:
        r.start()
    try:
        for n in range(40):
            replace_file(path, versions[n % 2])
            assert store.reload(force=True)
    finally:
        stop.set()
        for r in readers:
            r.join(10)
    assert seen == []


def test_a_replaced_table_is_emptied_once_nobody_reads_it(store, path):
    replace_file(path, b"carol:New\n")
    assert store.reload()
    replace_file(path, b"dave:Newer\n")
    held = store.table
    assert store.reload()
    assert held == {"carol": "New"}, "a table a reader holds must never change"


def assert_refused_once(store, metrics, caplog, error):
    """Three reloads of a file the store cannot take: ``error`` logged once, one failure
    counted, the table kept."""
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert store.reload() is False
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [error]
    assert sample(metrics, "fingerd_reloads_total", outcome="failure") == 1
    assert store.table["alice"] == "Happy"


def test_an_unreadable_file_is_reported_once(store, path, metrics, caplog):
    os.unlink(path)
    os.mkdir(path)
    try:
        assert_refused_once(store, metrics, caplog,
                            f"{path}: cannot read users file: Is a directory")
    finally:
        os.rmdir(path)


@pytest.mark.parametrize("make, problem", [
    (os.mkfifo, "not a regular file"),
    (lambda p: os.symlink("/dev/zero", p), "is a symbolic link, which fingerd does not follow"),
], ids=["fifo", "link-to-device"])
def test_a_fifo_or_device_at_the_path_is_an_unreadable_file_never_a_hang(store, path, metrics,
                                                                          make, problem,
                                                                          caplog):
    os.unlink(path)
    make(path)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(store.reload()), daemon=True)
    reader.start()
    reader.join(10)
    assert outcome == [False], "the reload returned, having read nothing"
    assert problem in caplog.text
    assert store.table["alice"] == "Happy"
    with pytest.raises(StoreError, match=problem):
        store.set_status("alice", "Blocked?", "a test")
    assert sample(metrics, "fingerd_reloads_total", outcome="failure") == 1


def test_a_file_over_the_size_bound_is_refused_unread_and_reported_once(store, path, metrics,
                                                                         caplog):
    """A sparse file of 257 MiB costs no disk; read, its zeros would cost as much memory."""
    with open(path, "r+b") as f:
        f.truncate(MAX_USERS_FILE_BYTES + 1)
    assert_refused_once(store, metrics, caplog, f"{path}: cannot read users file: {path}: "
                        f"larger than {MAX_USERS_FILE_BYTES} bytes")
    # In a process of its own: its peak of resident memory (VmHWM, the kB of a new
    # address space: ru_maxrss would be this process's, inherited) before and after.
    peak = subprocess.run(
        [sys.executable, "-c", "import sys; from fingerd.users import fileio\n"
         "def hwm():\n    return int(open('/proc/self/status').read()"
         ".split('VmHWM:')[1].split()[0])\n"
         "before = hwm()\n"
         "try:\n    fileio.read_bounded(sys.argv[1])\nexcept fileio.FileTooLarge:\n"
         "    print(hwm() - before)", path],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert int(peak) < 16 * 1024, f"{peak} kB more at its peak"


def test_a_file_whose_signature_is_known_is_not_read(path):
    data, sig = fileio.read_bounded(path)
    assert data == b"# staff\nalice:Happy\nbob:Sleeping\n"
    assert fileio.read_bounded(path, unless=(sig,)) == (None, sig)
    replace_file(path, b"carol:New\n")
    assert fileio.read_bounded(path, unless=(sig,))[0] == b"carol:New\n"


def spoil_by_removing(path):
    os.unlink(path)


def spoil_by_a_bad_line(path):
    with open(path, "ab") as f:
        f.write(b"no colon here\n")


def spoil_by_a_directory(path):
    os.unlink(path)
    os.mkdir(path)


@pytest.mark.parametrize("spoil, reason", [
    (spoil_by_removing, ": No such file or directory"),
    (spoil_by_a_bad_line, ":4: expected user:status"),
    (spoil_by_a_directory, ": Is a directory"),
], ids=["missing", "invalid", "directory"])
def test_a_worker_started_on_a_spoilt_file_serves_the_last_table_and_returns_why(
        path, metrics, spoil, reason, caplog):
    kept = Snapshot(create())
    UserStore(path, Metrics(), snapshot=kept).load()
    spoil(path)
    store = UserStore(path, metrics, snapshot=kept)
    with caplog.at_level(logging.INFO):
        fallback = store.load()
    assert fallback == Fallback(path + reason, 2)
    assert fallback.rejected() == f"users file rejected: {path}{reason}; 2 users still served"
    assert store.table == {"alice": "Happy", "bob": "Sleeping"}
    assert sample(metrics, "fingerd_reloads_total", outcome="failure") == 1
    assert caplog.records == [], "the caller says it, once"
    assert store.reload() is False and caplog.records == [], "nor the next check again"


def test_without_fallback_a_missing_file_starts_empty(path, metrics):
    kept = Snapshot(create())
    UserStore(path, Metrics(), snapshot=kept).load()
    os.unlink(path)
    store = UserStore(path, metrics, snapshot=kept)
    assert store.load(fallback=False) is None
    assert store.table == {}


def test_a_set_while_the_file_is_missing_and_users_are_served_is_refused(store, path):
    os.unlink(path)
    with pytest.raises(StoreError, match="^users file missing; restore it first$"):
        store.set_status("alice", "Alone?", "a test")
    assert not os.path.exists(path)
    assert store.table == {"alice": "Happy", "bob": "Sleeping"}


def test_a_set_without_a_file_and_without_users_creates_the_file(tmp_path, metrics):
    path = str(tmp_path / "users")
    kept = Snapshot(create())
    store = UserStore(path, metrics, snapshot=kept)
    store.load()
    store.set_status("alice", "First", "a test")
    with open(path, "rb") as f:
        assert f.read() == b"alice:First\n"
    assert kept.load() == b"# read at 0.0; save 1: 12 bytes\nalice:First\n", \
        "the file read back is kept for the next worker (no file was ever read whole)"


def test_a_file_fixed_right_after_a_start_refused_it_is_read_at_the_next_look(
        path, metrics, monkeypatch):
    """The version refused is the one read, not the one at the path a moment later: a
    file fixed in between was taken for the bad one and never read until it changed."""
    kept = Snapshot(create())
    UserStore(path, Metrics(), snapshot=kept).load()
    read = fileio.read_bounded

    def read_then_fixed(at):
        data, sig = read(at)
        with open(at, "w") as f:
            f.write("alice:Fixed\n")
        return data, sig

    with open(path, "w") as f:
        f.write("-bad line\n")
    store = UserStore(path, metrics, snapshot=Snapshot(kept.fd))
    monkeypatch.setattr(fileio, "read_bounded", read_then_fixed)
    assert store.load() is not None
    monkeypatch.setattr(fileio, "read_bounded", read)
    assert store.reload()
    assert store.table == {"alice": "Fixed"}


def test_a_status_set_after_the_file_was_read_is_kept_for_the_next_worker(path, metrics):
    kept = Snapshot(create())
    first = UserStore(path, Metrics(), snapshot=kept)
    first.load()
    first.set_status("alice", "Set since", "a test")
    first.set_status("carol", "New", "a test")
    first.set_status("alice", "Set again", "a test")
    os.unlink(path)
    store = UserStore(path, metrics, snapshot=kept)
    assert store.load() == Fallback(f"{path}: No such file or directory", 3)
    assert store.table == {"alice": "Set again", "bob": "Sleeping", "carol": "New"}


def test_a_worker_serving_its_predecessors_table_keeps_it_for_its_own_successor(path, metrics):
    """Each worker writes a snapshot of its own: one that took its table from the one before
    leaves it in its own for the next, the file still spoilt."""
    first = Snapshot(create())
    UserStore(path, Metrics(), snapshot=first).load()
    os.unlink(path)
    second = Snapshot(create(), previous=first.fd)
    assert UserStore(path, Metrics(), snapshot=second).load() is not None
    store = UserStore(path, metrics, snapshot=Snapshot(create(), previous=second.fd))
    assert store.load() == Fallback(f"{path}: No such file or directory", 2)
    assert store.table == {"alice": "Happy", "bob": "Sleeping"}


def test_a_worker_serving_the_previous_ones_table_says_when_its_file_was_read(path, metrics):
    """fingerd_last_reload_success_timestamp_seconds said 0 after a restart or a reload
    while the users file was bad, and FingerdUsersFileStale fired at once."""
    kept = Snapshot(create())
    first_metrics = Metrics()
    first = UserStore(path, first_metrics, snapshot=kept)
    first.load()
    read_at = first_metrics.registry.get_sample_value(
        "fingerd_last_reload_success_timestamp_seconds")
    first.set_status("alice", "Set since", "a test")
    with open(path, "a") as f:
        f.write("-bad line\n")
    store = UserStore(path, metrics, snapshot=Snapshot(kept.fd))
    assert store.load() is not None
    assert metrics.registry.get_sample_value(
        "fingerd_last_reload_success_timestamp_seconds") == read_at > 0
    assert store.table["alice"] == "Set since"


def test_sets_past_the_records_bound_save_the_whole_table_instead(path, metrics, monkeypatch):
    monkeypatch.setattr(snapshot, "MAX_SETS_BYTES", 64)
    kept = Snapshot(create())
    first = UserStore(path, Metrics(), snapshot=kept)
    first.load()
    for n in range(10):
        first.set_status("alice", f"status {n}", "a test")
    assert kept.load().count(snapshot.SET_MARK) < 10
    os.unlink(path)
    store = UserStore(path, metrics, snapshot=kept)
    store.load()
    assert store.table == {"alice": "status 9", "bob": "Sleeping"}


def test_a_record_that_is_not_a_valid_entry_spoils_the_snapshot_not_the_table(path):
    kept = Snapshot(create())
    kept.save(b"alice:Happy\n")
    assert kept.add_set("bob", "Fine")
    assert kept.load_table() == {"alice": "Happy", "bob": "Fine"}
    os.pwrite(kept.fd, snapshot.SET_MARK + b"no colon\n", os.fstat(kept.fd).st_size)
    assert kept.load_table() is None


def test_the_snapshot_follows_each_table_served_file_and_sets_alike(path, metrics):
    kept = Snapshot(create())
    first = UserStore(path, Metrics(), snapshot=kept)
    first.load()
    replace_file(path, b"carol:Edited\n")
    assert first.reload()
    first.set_status("dave", "Set after the edit", "a test")
    replace_file(path, b"broken\n")
    assert first.reload() is False
    assert kept.load_table() == first.table == {"carol": "Edited", "dave": "Set after the edit"}
    store = UserStore(path, metrics, snapshot=kept)
    assert store.load().users == 2
    assert store.table == first.table
