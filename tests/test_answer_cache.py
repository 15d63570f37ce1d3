"""The finger listener's cache of answers: one per query line and table, bounded."""

import gc
import weakref

from fingerd.serving.finger import AnswerCache
from fingerd.serving.service import Answer
from fingerd.users.table import UserTable


class Tables:
    """Stands in for the store: the current table, replaced at will."""

    def __init__(self):
        self.current = UserTable([("alice", "Happy")])

    def __call__(self):
        return self.current


class Maker:
    def __init__(self, size=10):
        self.calls = []
        self.size = size

    def __call__(self, line):
        self.calls.append(line)
        return Answer("found", b"x" * self.size)


def test_an_answer_is_made_once_per_line_and_table():
    tables, make = Tables(), Maker()
    cache = AnswerCache(tables, 1000)
    first = cache.get(tables(), b"alice", make, b"alice")
    assert cache.get(tables(), b"alice", make, b"alice") is first
    cache.get(tables(), b"bob", make, b"bob")
    assert make.calls == [b"alice", b"bob"]
    tables.current = tables.current.with_status("alice", "Sad")
    cache.get(tables(), b"alice", make, b"alice")
    assert make.calls == [b"alice", b"bob", b"alice"], "a new table makes answers anew"


def test_an_answer_made_while_the_table_changed_is_not_kept():
    tables = Tables()

    def make_during_a_reload(line):
        tables.current = UserTable([("alice", "Newer")])
        return Answer("found", b"made from the older table")

    cache = AnswerCache(tables, 1000)
    cache.get(tables(), b"alice", make_during_a_reload, b"alice")
    make = Maker()
    cache.get(tables(), b"alice", make, b"alice")
    assert make.calls == [b"alice"]


def test_an_answer_from_a_table_given_is_not_kept_for_another():
    """An answer made from the table a query was checked in, no longer the current one,
    is not the current table's."""
    tables, make = Tables(), Maker()
    checked = tables.current
    tables.current = UserTable([("alice", "Newer")])
    cache = AnswerCache(tables, 1000)
    cache.get(checked, b"alice", make, b"alice")
    cache.get(tables(), b"alice", make, b"alice")
    cache.get(tables(), b"alice", make, b"alice")
    assert make.calls == [b"alice", b"alice"]


def test_past_its_limit_the_cache_starts_again_empty():
    tables, make = Tables(), Maker(size=40)
    cache = AnswerCache(tables, 100)
    for line in (b"a", b"b", b"c"):
        cache.get(tables(), line, make, line)
    cache.get(tables(), b"a", make, b"a")
    assert make.calls == [b"a", b"b", b"c", b"a"], "a was dropped when c did not fit"
    cache.get(tables(), b"c", make, b"c")
    assert make.calls[-1] == b"a", "c is still kept"


def test_the_cache_does_not_keep_a_replaced_table_alive():
    tables = Tables()
    cache = AnswerCache(tables, 1000)
    cache.get(tables(), b"alice", Maker(), b"alice")
    gone = weakref.ref(tables.current)
    tables.current = UserTable()
    gc.collect()
    assert gone() is None
