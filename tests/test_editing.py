"""Setting a status in the users file on disk: validated once, spliced, written durably."""

import errno
import os
import stat
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerd.users import editing, fileio
from fingerd.users.editing import OutcomeUnknown, StatusWriter, StoreError, write_status
from fingerd.users.usersfile import with_status
from tests.support.disk_faults import failing_directory_fsync
from tests.support.users_files import NAMES, STATUSES, replace_file, users_file_fixture, valid_files

path = users_file_fixture(b"# staff\r\nalice:Happy\r\nbob:Sleeping\n")


@pytest.fixture
def validations(monkeypatch):
    """How many times a whole file was validated."""
    calls = []
    real = editing.check_users

    def counting(data, filename="users"):
        calls.append(filename)
        return real(data, filename)

    monkeypatch.setattr(editing, "check_users", counting)
    return calls


def signature_of(path):
    return fileio.signature(os.stat(path))


def writer_of(path, trusted):
    """A StatusWriter; if ``trusted``, one that has written the file as it is (alice's
    status unchanged), so trusts it."""
    writer = StatusWriter()
    if trusted:
        writer(path, "alice", "Happy")
    return writer


def test_a_set_is_spliced_in_keeping_comments_and_line_endings(path):
    before = signature_of(path)
    old, new = write_status(path, "alice", "Gone fishing")
    assert open(path, "rb").read() == b"# staff\r\nalice:Gone fishing\r\nbob:Sleeping\n"
    assert old == before and new == signature_of(path)


def test_an_untrusted_file_is_validated_and_a_trusted_one_is_not(path, validations):
    old, new = write_status(path, "alice", "one")
    assert validations == [path]
    write_status(path, "alice", "two", trusted=new)
    assert validations == [path]
    assert open(path, "rb").read() == b"# staff\r\nalice:two\r\nbob:Sleeping\n"


def test_the_writer_validates_once_then_trusts_what_it_wrote(path, validations):
    writer = StatusWriter()
    for i in range(3):
        writer(path, "carol", f"status {i}")
    assert validations == [path]
    assert writer.trusted == signature_of(path)
    assert open(path, "rb").read().endswith(b"bob:Sleeping\ncarol:status 2\n")


def test_an_operators_valid_edit_is_validated_again_and_kept(path, validations):
    writer = StatusWriter()
    writer(path, "alice", "one")
    replace_file(path, b"# edited\nalice:one\ndave:New\n")
    writer(path, "alice", "two")
    assert validations == [path, path]
    assert open(path, "rb").read() == b"# edited\nalice:two\ndave:New\n"


@pytest.mark.parametrize("edit", ["rename", "in place"])
def test_an_operators_broken_edit_refuses_the_set_and_is_left_as_it_is(path, edit):
    writer = StatusWriter()
    writer(path, "alice", "one")
    broken = b"alice:one\nbroken line\n"
    if edit == "rename":
        replace_file(path, broken)
    else:
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(broken)
    before = signature_of(path)
    with pytest.raises(StoreError, match="users file on disk has errors; fix it first"):
        writer(path, "alice", "two")
    assert open(path, "rb").read() == broken
    assert signature_of(path) == before
    assert writer.trusted is None


def test_a_failed_write_forgets_the_trusted_version(path, monkeypatch, validations):
    writer = StatusWriter()
    writer(path, "alice", "one")

    def disk_full(path, data, before_rename=None):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(fileio, "replace_durably", disk_full)
        with pytest.raises(StoreError, match="cannot write users file: No space left"):
            writer(path, "alice", "two")
    assert writer.trusted is None
    writer(path, "alice", "three")
    assert validations == [path, path]


def test_a_missing_file_is_created_with_the_one_entry(tmp_path):
    path = str(tmp_path / "new-users")
    old, new = StatusWriter()(path, "alice", "First")
    assert old is None and new == signature_of(path)
    assert open(path, "rb").read() == b"alice:First\n"
    assert os.stat(path).st_mode & 0o777 == fileio.NEW_FILE_MODE


def test_mode_is_kept_across_trusted_writes(path):
    os.chmod(path, 0o640)
    writer = StatusWriter()
    writer(path, "alice", "one")
    writer(path, "alice", "two")
    assert os.stat(path).st_mode & 0o777 == 0o640


# The write: unchanged parts copied a bounded piece a call.

@pytest.mark.parametrize("trusted", [False, True])
def test_the_unchanged_parts_are_copied_in_bounded_pieces(path, monkeypatch, trusted):
    writer = writer_of(path, trusted)
    monkeypatch.setattr(editing, "COPY_CHUNK", 7)
    calls = []
    real = os.write

    def spying(fd, data):
        calls.append(len(data))
        return real(fd, data)

    expected = with_status(open(path, "rb").read(), "alice", "Gone fishing")
    monkeypatch.setattr(os, "write", spying)
    writer(path, "alice", "Gone fishing")
    monkeypatch.setattr(os, "write", real)
    assert open(path, "rb").read() == expected
    assert calls and max(calls) <= 7


@pytest.fixture
def edit_while_copying(path, monkeypatch):
    """Make the first copy of an unchanged part overwrite the start of the file with the
    bytes given, before it copies."""
    real = editing._copy
    edit = []

    def edit_then_copy(*args):
        if edit and edit[0] is not None:
            with open(path, "r+b") as f:
                f.write(edit[0])
            edit[0] = None
        return real(*args)

    monkeypatch.setattr(editing, "_copy", edit_then_copy)
    monkeypatch.setattr(editing, "COPY_CHUNK", 4)
    return edit


@pytest.mark.parametrize("trusted", [False, True])
def test_a_file_edited_in_place_while_copied_is_read_again_and_its_edit_kept(
        path, edit_while_copying, trusted):
    writer = writer_of(path, trusted)
    edit_while_copying.append(b"# STAFF")
    writer(path, "bob", "Awake")
    assert edit_while_copying == [None]
    assert open(path, "rb").read() == b"# STAFF\r\nalice:Happy\r\nbob:Awake\n"


def test_a_file_broken_while_copied_is_left_broken_and_the_set_refused(path,
                                                                        edit_while_copying):
    edit_while_copying.append(b"broken\n")
    with pytest.raises(StoreError, match="users file on disk has errors"):
        write_status(path, "bob", "Awake")
    assert open(path, "rb").read().startswith(b"broken\n")


@pytest.fixture
def edit_after_read(path, monkeypatch):
    """Make the next reads of the file (as many as ``edits`` holds) each followed by an
    edit: ``(how, bytes)``, how being "rename" (an editor's save) or "in place" (an
    append)."""
    real_read = fileio.read_bounded
    edits = []

    def read_then_edit(*args, **kw):
        result = real_read(*args, **kw)
        if edits:
            how, data = edits.pop(0)
            if how == "rename":
                replace_file(path, data)
            else:
                with open(path, "ab") as f:
                    f.write(data)
        return result

    monkeypatch.setattr(fileio, "read_bounded", read_then_edit)
    return edits


def test_a_replaced_file_is_not_copied_from(path, edit_after_read):
    """The file read is the one copied from: a file renamed over it between the read and
    the copy is read in turn, and the set made in it, not in the version it replaced."""
    edit_after_read.append(("rename", b"carol:someone else's\n"))
    write_status(path, "bob", "Awake")
    assert open(path, "rb").read() == b"carol:someone else's\nbob:Awake\n"


@pytest.mark.parametrize("trusted", [False, True])
def test_a_file_edited_in_place_after_it_was_read_is_read_again_and_its_edit_kept(
        path, edit_after_read, trusted):
    writer = writer_of(path, trusted)
    edit_after_read.append(("in place", b"carol:Added\n"))
    writer(path, "bob", "Awake")
    assert open(path, "rb").read() == b"# staff\r\nalice:Happy\r\nbob:Awake\ncarol:Added\n"


@pytest.mark.parametrize("how", ["rename", "in place"])
def test_a_file_that_changes_at_each_read_fails_the_set_and_is_left_as_edited(
        path, edit_after_read, how):
    edit_after_read.extend([(how, b"carol:One\n"), (how, b"dave:Two\n")])
    with pytest.raises(StoreError, match="users file changed while it was written; try again"):
        write_status(path, "bob", "Awake")
    assert edit_after_read == []
    expected = (b"dave:Two\n" if how == "rename"
                else b"# staff\r\nalice:Happy\r\nbob:Sleeping\ncarol:One\ndave:Two\n")
    assert open(path, "rb").read() == expected


def test_a_file_changed_while_it_was_read_is_read_again(path, monkeypatch):
    """An editor that truncates the file and writes it again, caught between the two
    while the file is read: what was read (nothing) is not what the file holds."""
    real = fileio.signature
    steps = [lambda: os.truncate(path, 0),
             lambda: open(path, "ab").write(b"# rewritten\nalice:Happy\nbob:Sleeping\n")]

    def editing_as_read(st):
        if steps:  # the read's look before it reads, then its look after it
            steps.pop(0)()
        return real(st)

    monkeypatch.setattr(fileio, "signature", editing_as_read)
    write_status(path, "bob", "Awake")
    assert open(path, "rb").read() == b"# rewritten\nalice:Happy\nbob:Awake\n"


@pytest.mark.parametrize("trusted", [False, True])
def test_an_edit_while_the_new_file_is_synced_is_read_again_and_kept(path, monkeypatch,
                                                                      trusted):
    writer = writer_of(path, trusted)
    real = os.fsync
    appended = []

    def appending(fd):
        if not appended and stat.S_ISREG(os.fstat(fd).st_mode) \
                and os.fstat(fd).st_ino != os.stat(path).st_ino:
            appended.append(True)
            with open(path, "ab") as f:
                f.write(b"carol:Added\n")
        return real(fd)

    monkeypatch.setattr(os, "fsync", appending)
    renamed_next = []
    writer(path, "bob", "Awake", before_rename=lambda: renamed_next.append(True))
    assert appended
    assert open(path, "rb").read() == b"# staff\r\nalice:Happy\r\nbob:Awake\ncarol:Added\n"
    assert renamed_next == [True], "before_rename comes after the last look, so only the " \
        "copy renamed is announced"


def edit_now(path, edit):
    """An operator's edit, ``carol:Added`` added: saved by rename (``replace_file``), as
    sed -i and most editors save, or appended in place."""
    if edit == "rename":
        with open(path, "rb") as f:
            replace_file(path, f.read() + b"carol:Added\n")
    else:
        with open(path, "ab") as f:
            f.write(b"carol:Added\n")


@pytest.mark.parametrize("edit", ["rename", "in place"])
@pytest.mark.parametrize("trusted", [False, True])
def test_an_edit_between_the_last_look_and_the_rename_is_put_back_and_kept(path, edit, trusted):
    """``before_rename`` runs after the last look, right before the rename: an edit made
    then is exchanged back into place (RENAME_EXCHANGE), read, and the set made on it."""
    writer = writer_of(path, trusted)
    announced = []

    def edit_in_the_instant():
        announced.append(True)
        if len(announced) == 1:
            edit_now(path, edit)

    writer(path, "bob", "Awake", before_rename=edit_in_the_instant)
    assert open(path, "rb").read() == b"# staff\r\nalice:Happy\r\nbob:Awake\ncarol:Added\n"
    assert announced == [True, True], "announced for each copy put in place"
    assert writer.trusted == signature_of(path)
    assert os.listdir(os.path.dirname(path)) == ["users"], "no temporary file left"


def test_a_file_made_between_the_last_look_and_the_rename_is_kept(path):
    """Where there was no file, one made in the instant is not renamed over
    (RENAME_NOREPLACE): the set is made on it."""
    os.unlink(path)
    announced = []

    def make_in_the_instant():
        announced.append(True)
        if len(announced) == 1:
            with open(path, "wb") as f:
                f.write(b"carol:Added\n")

    write_status(path, "bob", "Awake", before_rename=make_in_the_instant)
    assert open(path, "rb").read() == b"carol:Added\nbob:Awake\n"
    assert announced == [True, True]


def test_a_file_removed_between_the_last_look_and_the_rename_stays_removed_but_for_the_set(
        path):
    """The set is made on what is there then: no file, so one with the status alone, as a
    set on a missing users file makes."""
    write_status(path, "bob", "Awake", before_rename=lambda: os.path.exists(path) and
                 os.unlink(path))
    assert open(path, "rb").read() == b"bob:Awake\n"
    assert os.listdir(os.path.dirname(path)) == ["users"]


def test_a_file_edited_in_every_instant_refuses_the_set_and_keeps_each_edit(path):
    def edit_in_every_instant():
        edit_now(path, "rename")

    with pytest.raises(StoreError, match="users file changed while it was written; try again"):
        write_status(path, "bob", "Awake", before_rename=edit_in_every_instant)
    assert open(path, "rb").read() == (b"# staff\r\nalice:Happy\r\nbob:Sleeping\n"
                                       b"carol:Added\ncarol:Added\n")
    assert os.listdir(os.path.dirname(path)) == ["users"]


def test_a_failure_once_the_new_file_is_in_place_leaves_the_outcome_unknown(path,
                                                                          monkeypatch):
    """ERROR would say that nothing changed: once the names are exchanged the new file
    is in place, so a failure to remove the old version is OutcomeUnknown."""
    real, failed = os.unlink, []

    def failing_once(name, *args, **kwargs):
        if not failed:
            failed.append(name)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", failing_once)
    with pytest.raises(OutcomeUnknown, match="Input/output error"):
        write_status(path, "bob", "Awake")
    monkeypatch.undo()
    assert open(path, "rb").read() == b"# staff\r\nalice:Happy\r\nbob:Awake\n"
    assert failed[0].endswith(".tmp")


def test_without_renameat2_the_new_file_is_renamed_into_place(path, monkeypatch):
    """A libc without renameat2 (or a file system without RENAME_EXCHANGE): a plain
    rename, the instant before it open as it was."""
    monkeypatch.setattr(fileio, "_renameat2", None)
    write_status(path, "bob", "Awake", before_rename=lambda: edit_now(path, "rename"))
    assert open(path, "rb").read() == b"# staff\r\nalice:Happy\r\nbob:Awake\n"


@settings(max_examples=60, deadline=None)
@given(valid_files(), st.data(), STATUSES, st.booleans())
def test_a_write_gives_the_file_with_status_gives(file, data, status, trusted):
    content, table = file
    name = data.draw(st.one_of(st.sampled_from(sorted(table)), NAMES) if table else NAMES)
    with tempfile.TemporaryDirectory() as directory:
        target = os.path.join(directory, "users")
        with open(target, "wb") as f:
            f.write(content)
        write_status(target, name, status, signature_of(target) if trusted else None)
        assert open(target, "rb").read() == with_status(content, name, status)


def test_a_trusted_version_is_read_only_where_searched(path, monkeypatch):
    writer = StatusWriter()
    writer(path, "alice", "one")
    reads = []
    real = os.pread

    def spying(fd, count, offset):
        reads.append(count)
        return real(fd, count, offset)

    monkeypatch.setattr(os, "pread", spying)
    monkeypatch.setattr(editing, "COPY_CHUNK", 8)
    writer(path, "bob", "two")
    assert reads and max(reads) <= 8 + len(b"\nbob:") - 1
    assert open(path, "rb").read() == b"# staff\r\nalice:one\r\nbob:two\n"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(min_size=1, max_size=6), st.integers(0, 70),
       st.integers(1, 9))
def test_a_file_view_finds_what_bytes_find(content, sub, start, chunk):
    saved = editing.COPY_CHUNK
    editing.COPY_CHUNK = chunk
    try:
        with tempfile.TemporaryFile() as f:
            f.write(content)
            f.flush()
            view = editing._FileView(f.fileno(), len(content))
            assert view.find(sub, start) == content.find(sub, start)
            assert view[start:start + chunk] == content[start:start + chunk]
            assert len(view) == len(content)
    finally:
        editing.COPY_CHUNK = saved


@pytest.mark.parametrize("trusted", [False, True])
def test_a_set_that_would_grow_the_file_past_what_is_read_is_refused(path, monkeypatch,
                                                                     trusted):
    writer = writer_of(path, trusted)
    before = open(path, "rb").read()
    limit = len(with_status(before, "alice", "Away"))
    monkeypatch.setattr(editing, "MAX_USERS_FILE_BYTES", limit)
    with pytest.raises(StoreError, match=f"users file would grow past {limit} bytes, the "
                                         f"most fingerd reads; remove entries first"):
        writer(path, "alice", "Away!")
    assert open(path, "rb").read() == before
    writer(path, "alice", "Away")
    assert open(path, "rb").read() == with_status(before, "alice", "Away")


def test_a_write_whose_directory_is_not_synced_after_the_rename_has_an_unknown_outcome(
        path, monkeypatch):
    """The new file is in place: StoreError would say that nothing changed."""
    writer = writer_of(path, True)
    monkeypatch.setattr(os, "fsync", failing_directory_fsync(os.fsync))
    with pytest.raises(OutcomeUnknown, match="users file replaced, but not known to survive "
                                             "a crash: Input/output error"):
        writer(path, "alice", "Away")
    assert open(path, "rb").read() == b"# staff\r\nalice:Away\r\nbob:Sleeping\n"
    assert writer.trusted is None
