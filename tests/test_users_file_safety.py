"""The users file as the root parent touches it (docs/guide.md, "The users file"): no symbolic
link is followed, no file or directory another user could change is written, and a
write goes through the directory it checked."""

import os
import pathlib
import stat

import pytest

from fingerd.users import fileio
from fingerd.users.editing import StoreError, write_status
from tests.support.accounts import NOBODY
from tests.support.children import as_nobody
from tests.support.daemon import run_fingerd
from tests.support.markers import needs_root
from tests.support.polling import wait_until


def file_in_a_directory(path, data, directory_mode, mode):
    """``path`` (a pathlib path) made with its directory, at the modes given."""
    path.parent.mkdir(directory_mode)
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture
def users(tmp_path):
    """A users file in a directory of its own, both as the daemon wants them."""
    return file_in_a_directory(tmp_path / "etc" / "users", b"alice:Happy\n", 0o755, 0o644)


@pytest.fixture
def secret(tmp_path):
    """A file only its owner may read, in a directory only its owner may enter."""
    return file_in_a_directory(tmp_path / "vault" / "secret", b"root:the password is hunter2\n",
                               0o700, 0o600)


def symlink_problem(path):
    return (f"the path is a symbolic link, which fingerd does not follow; put the file "
            f"itself at {path}")


def test_a_symlink_at_the_path_is_never_followed(users, secret):
    users.unlink()
    users.symlink_to(secret)
    for attempt in (lambda: fileio.read_bounded(str(users)),
                    lambda: fileio.check_users_file(str(users)),
                    lambda: fileio.replace_durably(str(users), b"alice:Owned\n")):
        with pytest.raises(fileio.UnsafeUsersFile) as refused:
            attempt()
        assert refused.value.strerror == symlink_problem(users)
    with pytest.raises(StoreError, match="cannot read users file: the path is a symbolic link"):
        write_status(str(users), "alice", "Owned")
    assert users.is_symlink() and secret.read_bytes() == b"root:the password is hunter2\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in users.parent.iterdir()) == ["users"]


def test_a_symlink_as_the_directory_is_never_followed(users, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(users.parent)
    path = link / "users"
    with pytest.raises(fileio.UnsafeUsersFile) as refused:
        fileio.replace_durably(str(path), b"alice:Owned\n")
    assert refused.value.strerror == (f"directory {link} is a symbolic link, which fingerd "
                                      f"does not follow; name the real directory in "
                                      f"users_file")
    with pytest.raises(fileio.UnsafeUsersFile):
        fileio.check_users_file(str(path))
    assert users.read_bytes() == b"alice:Happy\n"


@pytest.mark.parametrize("mode, who, flags", [
    (0o775, "group", "g"), (0o757, "others", "o"), (0o777, "group and others", "go"),
    (0o1777, "group and others", "go"),
])
def test_a_directory_others_may_write_is_refused_with_what_to_run(users, mode, who, flags):
    directory = users.parent
    directory.chmod(mode)
    try:
        for attempt in (lambda: fileio.check_users_file(str(users)),
                        lambda: fileio.replace_durably(str(users), b"alice:Owned\n")):
            with pytest.raises(fileio.UnsafeUsersFile) as refused:
                attempt()
            assert refused.value.strerror == (f"directory {directory} is writable by {who}; "
                                              f"run chmod {flags}-w {directory}")
        users.unlink()
        with pytest.raises(fileio.UnsafeUsersFile):  # not created either
            fileio.replace_durably(str(users), b"alice:Owned\n")
        assert not users.exists()
    finally:
        directory.chmod(0o755)
    assert fileio.replace_durably(str(users), b"alice:Back\n")
    assert users.read_bytes() == b"alice:Back\n"


@pytest.mark.parametrize("mode, who, flags", [(0o664, "group", "g"), (0o646, "others", "o")])
def test_a_file_others_may_write_is_refused_with_what_to_run(users, mode, who, flags):
    users.chmod(mode)
    with pytest.raises(fileio.UnsafeUsersFile) as refused:
        fileio.replace_durably(str(users), b"alice:Owned\n")
    assert refused.value.strerror == f"the file is writable by {who}; run chmod {flags}-w {users}"
    assert users.read_bytes() == b"alice:Happy\n"
    assert fileio.read_bounded(str(users))[0] == b"alice:Happy\n", "the worker still reads it"


def test_the_write_goes_to_the_directory_checked_even_if_it_is_swapped(users, tmp_path,
                                                                       monkeypatch):
    """Between the check and the rename, the directory is renamed away and a symbolic
    link to another put in its place: the new file still lands in the one checked."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "users").write_bytes(b"victim\n")
    directory = users.parent
    moved = tmp_path / "etc.moved"
    create = fileio._create_temporary

    def swap_then_create(dir_fd, name):
        directory.rename(moved)
        directory.symlink_to(elsewhere)
        return create(dir_fd, name)

    monkeypatch.setattr(fileio, "_create_temporary", swap_then_create)
    fileio.replace_durably(str(users), b"alice:New\n")
    assert (moved / "users").read_bytes() == b"alice:New\n"
    assert (elsewhere / "users").read_bytes() == b"victim\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["users"]


def test_a_missing_file_is_created_private_then_public(users):
    users.unlink()
    fileio.check_users_file(str(users))
    fileio.replace_durably(str(users), b"alice:New\n")
    assert stat.S_IMODE(users.stat().st_mode) == fileio.NEW_FILE_MODE


def test_the_new_file_is_on_disk_before_its_rename_and_the_rename_before_the_return(
        users, monkeypatch):
    """The order that makes a crash leave the old file or the new one, whole: the new
    file created (never an existing one), written, fsynced and closed, then put in the
    old one's place (the two names exchanged atomically, the old one's then removed),
    then the directory fsynced before the write is reported done. (The old file is
    opened first, read-only, for its extended attributes.)"""
    calls, names = [], {}

    def recorded(name, real, describe, module=os):
        def call(*args, **kw):
            result = real(*args, **kw)
            calls.append((name, describe(args, result)))
            return result
        monkeypatch.setattr(module, name, call)

    def opened(args, fd):
        names[fd] = os.path.basename(args[0])
        return names[fd], args[1] & (os.O_CREAT | os.O_EXCL)

    recorded("open", os.open, opened)
    for name in ("write", "fsync", "close"):
        recorded(name, getattr(os, name), lambda args, _result: names.get(args[0], args[0]))
    recorded("_rename2", fileio._rename2, lambda args, _result: (args[1], args[2], args[3]),
             fileio)
    recorded("unlink", os.unlink, lambda args, _result: args[0])
    fileio.replace_durably(str(users), b"alice:Durable\n")
    monkeypatch.undo()
    directory = users.parent.name
    temporary = next(name for name in names.values() if name.endswith(".tmp"))
    assert [call for call in calls if call[0] != "write" or call[1] != temporary] == [
        ("open", (directory, 0)), ("open", ("users", 0)),
        ("open", (temporary, os.O_CREAT | os.O_EXCL)),
        ("fsync", temporary), ("close", temporary),
        ("_rename2", (temporary, "users", fileio.RENAME_EXCHANGE)), ("unlink", temporary),
        ("fsync", directory), ("close", "users"), ("close", directory)]
    writes = [i for i, call in enumerate(calls) if call == ("write", temporary)]
    assert writes and writes[-1] < calls.index(("fsync", temporary))
    assert users.read_bytes() == b"alice:Durable\n"


def test_setuid_and_setgid_bits_are_not_kept(users):
    users.chmod(0o6644)
    fileio.replace_durably(str(users), b"alice:New\n")
    assert stat.S_IMODE(users.stat().st_mode) == 0o644


@needs_root
@pytest.mark.parametrize("what", ["directory", "file"])
def test_a_file_or_directory_of_another_user_is_refused_with_what_to_run(users, what):
    target = users.parent if what == "directory" else users
    os.chown(target, NOBODY, NOBODY)
    with pytest.raises(fileio.UnsafeUsersFile) as refused:
        fileio.replace_durably(str(users), b"alice:Owned\n")
    name = f"directory {target}" if what == "directory" else "the file"
    assert refused.value.strerror == (f"{name} is owned by nobody, not by root; "
                                      f"run chown root {target}")
    assert users.read_bytes() == b"alice:Happy\n"


def in_a_child_as_nobody(function):
    """``function()``'s outcome, run in a forked child that dropped to nobody: "ok" or
    the OSError's strerror."""
    def attempt():
        try:
            function()
        except OSError as exc:
            return exc.strerror
        return "ok"

    result = as_nobody(attempt)
    assert result.error is None, result.error
    return result.value


@needs_root
def test_not_run_as_root_the_daemons_own_user_counts_as_root(public_dir):
    users = str(file_in_a_directory(pathlib.Path(public_dir, "etc", "users"), b"alice:Happy\n",
                                    0o755, 0o644))
    directory = os.path.dirname(users)
    os.chown(directory, NOBODY, NOBODY)
    os.chown(users, NOBODY, NOBODY)
    assert in_a_child_as_nobody(lambda: fileio.check_users_file(users)) == "ok"
    os.chown(users, 0, 0)
    assert in_a_child_as_nobody(lambda: fileio.check_users_file(users)) == "ok"
    os.chown(users, 4242, 4242)  # an account that does not exist: named by its uid
    assert in_a_child_as_nobody(lambda: fileio.check_users_file(users)) == (
        f"the file is owned by uid 4242, not by root or nobody; run chown nobody {users}")


def test_fingerd_and_its_check_refuse_a_symlinked_users_file(make_daemon, secret):
    d = make_daemon()
    os.unlink(d.users_file)
    os.symlink(secret, d.users_file)
    expected = f"fingerd: users file {d.users_file}: {symlink_problem(d.users_file)}\n"
    # A start exits EX_CONFIG, which systemd does not restart; the check 1.
    for args, status in ((["-t"], 1), (["-n"], 78)):
        result = run_fingerd("-c", d.config_file, *args)
        assert (result.returncode, result.stderr) == (status, expected)
    assert not os.path.exists(d.pidfile)
    assert secret.read_bytes() == b"root:the password is hunter2\n"


@pytest.mark.parametrize("mode, who, flags", [(0o775, "group", "g"), (0o757, "others", "o")])
def test_fingerd_and_its_check_refuse_a_directory_others_may_write(make_daemon, mode, who,
                                                                   flags):
    d = make_daemon()
    os.chmod(d.dir, mode)
    expected = (f"fingerd: users file {d.users_file}: directory {d.dir} is writable by "
                f"{who}; run chmod {flags}-w {d.dir}\n")
    # A start exits EX_CONFIG, which systemd does not restart; the check 1.
    for args, status in ((["-t"], 1), (["-n"], 78)):
        result = run_fingerd("-c", d.config_file, *args)
        assert (result.returncode, result.stderr) == (status, expected)


def test_a_symlink_put_there_while_running_refuses_the_set_and_copies_nothing(make_daemon,
                                                                               secret):
    """The review's finding: after one set, root had copied the target, a secret in a
    root-only directory, into place as a world-readable file that finger served."""
    d = make_daemon().start()
    os.unlink(d.users_file)
    os.symlink(secret, d.users_file)
    reply = d.setter(b"alice\r\nOwned\r\n")
    assert reply == (f"ERROR cannot read users file: {symlink_problem(d.users_file)}\r\n"
                     .encode())
    assert os.path.islink(d.users_file) and os.readlink(d.users_file) == str(secret)
    assert secret.read_bytes() == b"root:the password is hunter2\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    for name in os.listdir(d.dir):
        path = os.path.join(d.dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            assert b"hunter2" not in open(path, "rb").read(), name
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n", "the last good table"
    assert d.finger(b"root\r\n") == b"No such user\r\n"
    wait_until(lambda: "is a symbolic link, which fingerd does not follow" in d.log()
               and "setter: request from" in d.log(), what="the refusal logged")


def test_a_directory_made_writable_while_running_refuses_the_set(make_daemon):
    d = make_daemon().start()
    os.chmod(d.dir, 0o777)
    try:
        reply = d.setter(b"alice\r\nOwned\r\n")
        assert reply == (f"ERROR cannot write users file: directory {d.dir} is writable by "
                         f"group and others; run chmod go-w {d.dir}\r\n").encode()
        assert open(d.users_file, "rb").read() == b"alice:Happy and well\nbob:Sleeping\n"
    finally:
        os.chmod(d.dir, 0o755)
    assert d.setter(b"alice\r\nFixed\r\n") == b"OK\r\n"


@needs_root
def test_a_start_removes_the_temporary_files_of_writes_cut_short_and_nothing_else(
        make_daemon, secret):
    d = make_daemon()
    name = os.path.basename(d.users_file)

    def planted(entry, owner=0, make=lambda path: path.write_bytes(b"alice:Half")):
        path = pathlib.Path(d.dir) / entry
        make(path)
        os.chown(path, owner, owner, follow_symlinks=False)
        return str(path)

    left = [planted(f".{name}.0123456789ab.tmp"), planted(f".{name}.fedcba987654.tmp")]
    kept = [planted(f".{name}.tmp"), planted(f".{name}.0123456789ab.tmp.orig"),
            planted(f".{name}.0123456789AB.tmp"), planted(".other.0123456789ab.tmp"),
            planted(f".{name}.aaaaaaaaaaaa.tmp", owner=NOBODY),
            planted(f".{name}.bbbbbbbbbbbb.tmp", make=lambda path: path.symlink_to(secret)),
            planted(f".{name}.cccccccccccc.tmp", make=lambda path: path.mkdir())]
    assert run_fingerd("-c", d.config_file, "-t").returncode == 0
    assert all(os.path.lexists(path) for path in left), "a check changes nothing"
    d.start()
    assert not any(os.path.lexists(path) for path in left)
    assert all(os.path.lexists(path) for path in kept)
    assert secret.read_bytes() == b"root:the password is hunter2\n"
    log = d.log()
    assert log.count("left by a write of the users file that was cut short") == 2
    for path in left:
        assert f"removed {path}, left by a write of the users file that was cut short" in log
    assert d.setter(b"alice\r\nBack\r\n") == b"OK\r\n"
    assert {entry for entry in os.listdir(d.dir) if entry.endswith(".tmp")} == {
        os.path.basename(path) for path in kept if path.endswith(".tmp")}, "a set leaves none"
