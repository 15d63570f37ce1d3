"""The sharded user table: a read-only mapping that is built, derived and released."""

from hypothesis import given
from hypothesis import strategies as st

from fingerd.table import SHARDS, UserTable

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


def test_release_empties_the_table():
    table = UserTable((f"u{i}", "s") for i in range(5000))
    table.release()
    assert len(table) == 0 and table == {}


def test_release_leaves_shards_that_an_older_table_shares():
    older = UserTable((f"u{i}", "s") for i in range(5000))
    newer = older.with_status("u1", "changed")
    newer.release()
    assert older == {f"u{i}": "s" for i in range(5000)}, "a reader of the older table saw it change"
    own = len(older._shards[hash("u1") % SHARDS])
    assert "u1" not in newer and len(newer) == 5000 - own, "its own shard is freed"
