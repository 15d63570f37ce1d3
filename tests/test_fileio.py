"""Replacing the users file keeps what the operator set on it (docs/guide.md, "The setter
service"): owner, group, permission bits, and extended attributes, an ACL among them."""

import errno
import os

import pytest

from fingerd.config import read_config_file
from fingerd.users import fileio
from fingerd.users.editing import StatusWriter, StoreError
from fingerd.users.redis_password import read_password
from tests.support.accounts import NOBODY
from tests.support.acl import ACCESS_ACL, grant_read
from tests.support.children import as_nobody
from tests.support.markers import needs_root
from tests.support.users_files import replace_file


@pytest.fixture
def users(public_dir):
    """A users file of root's, 0640, in a directory anyone may enter."""
    path = os.path.join(public_dir, "users")
    with open(path, "wb") as f:
        f.write(b"alice:Happy\n")
    os.chmod(path, 0o640)
    return path


def attributes(path):
    return {name: os.getxattr(path, name) for name in os.listxattr(path)}


def read_as_nobody(path):
    def body():
        with open(path, "rb") as f:
            return f.read().decode()
    return as_nobody(body)


@needs_root
def test_a_set_keeps_the_group_of_a_file_in_a_setgid_directory(public_dir, users):
    os.chown(public_dir, 0, NOBODY)
    os.chmod(public_dir, 0o2755)
    StatusWriter()(users, "alice", "Away")
    st = os.stat(users)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o640)


@needs_root
def test_a_set_keeps_the_acl_and_extended_attributes_and_whom_they_let_read(users):
    acl = grant_read(users, NOBODY)
    os.setxattr(users, "user.note", b"read by the worker")
    os.setxattr(users, "trusted.origin", b"puppet")
    assert read_as_nobody(users).value == "alice:Happy\n"
    before = attributes(users)
    StatusWriter()(users, "alice", "Away")
    assert attributes(users) == before and before[ACCESS_ACL] == acl
    assert os.stat(users).st_mode & 0o7777 == 0o640
    assert read_as_nobody(users).value == "alice:Away\n"


def test_a_file_system_without_extended_attributes_is_no_error(users, monkeypatch):
    def unsupported(fd):
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(os, "listxattr", unsupported)
    StatusWriter()(users, "alice", "Away")
    assert open(users, "rb").read() == b"alice:Away\n"


def test_an_attribute_the_new_file_refuses_fails_the_set_and_changes_nothing(users,
                                                                              monkeypatch):
    os.setxattr(users, "user.note", b"keep me")
    before = os.stat(users)
    real = os.setxattr

    def refusing(target, name, value, *args, **kw):
        if name == "user.note":
            raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))
        return real(target, name, value, *args, **kw)

    monkeypatch.setattr(os, "setxattr", refusing)
    with pytest.raises(StoreError, match="cannot write users file: extended attribute "
                                         "user.note not copied: Operation not supported"):
        StatusWriter()(users, "alice", "Away")
    assert open(users, "rb").read() == b"alice:Happy\n"
    assert fileio.signature(os.stat(users)) == fileio.signature(before)
    assert sorted(os.listdir(os.path.dirname(users))) == ["users"]


def test_a_version_put_in_place_just_before_the_rename_is_put_back(users):
    """replace_durably's rename is an exchange: what it displaced, if not the version it
    looked at first, goes back in place, and Superseded says so; nothing is left beside."""
    before = os.stat(users)

    with pytest.raises(fileio.Superseded):
        fileio.replace_durably(users, b"alice:Set\n",
                               before_rename=lambda: replace_file(users, b"alice:Edited\n"))
    with open(users, "rb") as f:
        assert f.read() == b"alice:Edited\n"
    assert os.stat(users).st_ino != before.st_ino
    assert not temporaries_beside(users)
    # With nothing changed, the new version is put in place and the old one removed.
    fileio.replace_durably(users, b"alice:Set\n")
    with open(users, "rb") as f:
        assert f.read() == b"alice:Set\n"
    assert not temporaries_beside(users)


def temporaries_beside(path):
    return [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]


def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("read", [
    fileio.read_bounded,
    read_config_file,
    read_password,
], ids=["users file", "configuration", "Redis password"])
def test_a_directory_where_a_file_is_read_costs_no_descriptor(tmp_path, read):
    """Refused as a directory, each time, and closed: the worker's watcher meets a users
    file replaced by a directory at each look, the parent one at each reload."""
    before = _open_descriptors()
    for _ in range(3):
        with pytest.raises(IsADirectoryError):
            read(str(tmp_path))
    assert _open_descriptors() == before
