"""The sharded user table: a read-only mapping that is built and derived, never changed."""

import weakref

from hypothesis import given
from hypothesis import strategies as st

from fingerd.users.table import SHARDS, UserTable, free_gradually

NAMES = st.text("abcdefgh.-_0123", min_size=1, max_size=8)
ENTRIES = st.dictionaries(NAMES, st.text(max_size=5), max_size=200)


@given(ENTRIES)
def test_behaves_as_the_dict_it_was_built_from(entries):
    table = UserTable(entries.items())
    assert table == entries and len(table) == len(entries)
    assert dict(table.items()) == entries and sorted(table.values()) == sorted(entries.values())
    for name, status in entries.items():
        assert table.get(name) == table[name] == status and name in table
    assert table.get("absent!") is None and "absent!" not in table


@given(ENTRIES, NAMES, st.text(max_size=5))
def test_with_status_changes_only_the_new_table(entries, name, status):
    old = UserTable(entries.items())
    new = old.with_status(name, status)
    assert old == entries
    assert new == {**entries, name: status}


def test_a_large_table_is_spread_over_every_shard():
    table = UserTable((f"user{i}", "s") for i in range(SHARDS * 100))
    sizes = [len(shard) for shard in table._shards]
    assert min(sizes) > 0 and max(sizes) < 300, sizes


def test_an_iteration_holds_the_table_until_it_ends():
    table = UserTable((f"u{i}", "s") for i in range(1000))
    gone = weakref.ref(table._generation)
    iterations = [iter(table), table.items(), table.values()]
    for it in iterations:
        next(it)
    del table
    assert gone() is not None, "an iterating reader must keep the table's generation alive"
    assert [len([*it]) for it in iterations] == [999, 999, 999]
    del it, iterations
    assert gone() is None


def test_free_gradually_empties_a_table_nobody_holds():
    holder = [UserTable((f"u{i}", "s") for i in range(5000))]
    shards = holder[0]._shards
    free_gradually(holder, wait=0.05)
    assert not any(shards), "every entry freed"


def test_free_gradually_leaves_a_table_that_a_reader_iterates():
    table = UserTable((f"u{i}", "s") for i in range(5000))
    listing = table.items()
    first = next(listing)
    free_gradually([table], wait=0.05)
    assert len(table) == 5000 and len([first, *listing]) == 5000


def test_free_gradually_leaves_a_derived_table_whole():
    older = UserTable((f"u{i}", "s") for i in range(5000))
    newer = older.with_status("u1", "changed")
    free_gradually([older], wait=0.05)
    assert newer == {**{f"u{i}": "s" for i in range(5000)}, "u1": "changed"}
