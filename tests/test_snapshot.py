"""The snapshot a worker keeps for the next: what it writes, and what a successor loads
of it; never a table or a record cut short or torn."""

import os

import pytest

from fingerd.users.snapshot import SET_MARK, Snapshot, create

TABLE = b"alice:Happy\nbob:Sleeping\ncarol:Reading\n"


@pytest.fixture
def kept():
    snapshot = Snapshot(create())
    snapshot.save(TABLE, read_at=1700000000.5)
    yield snapshot
    os.close(snapshot.fd)


def size(snapshot):
    return os.fstat(snapshot.fd).st_size


def test_a_worker_writes_its_own_snapshot_and_reads_its_predecessors(kept):
    successor = Snapshot(create(), previous=kept.fd)
    assert successor.load_table() == {"alice": "Happy", "bob": "Sleeping", "carol": "Reading"}
    assert successor.read_at == 1700000000.5
    successor.save(b"dave:New\n")
    assert successor.add_set("erin", "Set")
    assert Snapshot(kept.fd).load_table() == {"alice": "Happy", "bob": "Sleeping",
                                              "carol": "Reading"}, "the predecessor's unchanged"
    assert Snapshot(create(), previous=successor.fd).load_table() == {"dave": "New",
                                                                     "erin": "Set"}


@pytest.mark.parametrize("cut", [0, len("alice:Happy\n")], ids=["after the header",
                                                                 "after a line"])
def test_a_table_cut_short_is_not_loaded(kept, cut):
    """Its writer was killed while saving it: what is there is a valid users file, but
    not the table served."""
    os.ftruncate(kept.fd, size(kept) - len(TABLE) + cut)
    assert kept.load_table() is None


def test_a_last_record_cut_short_is_left_out_and_the_others_apply(kept):
    assert kept.add_set("alice", "Set")
    os.pwrite(kept.fd, SET_MARK + b"bob:Gone fi", size(kept))
    assert kept.load_table() == {"alice": "Set", "bob": "Sleeping", "carol": "Reading"}


@pytest.mark.parametrize("torn", [
    b"alice:Set\ncarol:Rea",       # written over the end of a table being written
    b"bob:Gone fi\0alice:Set\n",   # its end written over by the next record
], ids=["over a table", "under a record"])
def test_a_record_torn_by_another_write_spoils_the_snapshot(kept, torn):
    os.pwrite(kept.fd, SET_MARK + torn + SET_MARK + b"dave:Fine\n", size(kept))
    assert kept.load_table() is None


def test_a_table_saved_again_while_it_was_read_is_not_loaded(kept):
    """Even one of the same length: what was read may be half of each."""

    class SavedWhileRead(Snapshot):
        def load(self):
            data = super().load()
            kept.save(TABLE.replace(b"Happy", b"Sadly"))
            return data

    assert SavedWhileRead(create(), previous=kept.fd).load_table() is None
    assert Snapshot(create(), previous=kept.fd).load_table()["alice"] == "Sadly"
