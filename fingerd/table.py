"""The table of user statuses: a read-only mapping split into shards by hash.

CPython grows a dict by rehashing every entry in one C call that holds the
GIL: about 30 ms for the last growth of a million-entry table, a pause every
query would wait out during a reload. Each shard here grows on its own and
holds 1/SHARDS of the entries, so no single step of a build holds the GIL
for long, and setting one status copies one shard rather than the table.
"""

import sys
from collections.abc import Mapping
from itertools import chain

#: Shards of every table; a power of two, so a hash picks one with a mask.
SHARDS = 64
_MASK = SHARDS - 1


def _unshared_references():
    """What ``release`` sees as the reference count of a shard only its table holds.

    Measured the way ``release`` measures (the table's tuple, the loop
    variable, ``getrefcount``'s argument), so that how an interpreter
    counts borrowed references cannot make a shared shard look unshared.
    """
    return [sys.getrefcount(shard) for shard in ({},)][0]


_UNSHARED_REFERENCES = _unshared_references()
#: Entries ``release`` pops from one shard before moving to the next.
_RELEASE_SLICE = 64


class UserTable(Mapping):
    """Name to status; never changed once built, so readers need no lock."""

    __slots__ = ("_shards",)

    def __init__(self, entries=()):
        shards = tuple({} for _ in range(SHARDS))
        for name, status in entries:
            shards[hash(name) & _MASK][name] = status
        self._shards = shards

    @classmethod
    def _of(cls, shards):
        table = cls.__new__(cls)
        table._shards = shards
        return table

    def get(self, name, default=None):
        return self._shards[hash(name) & _MASK].get(name, default)

    def __getitem__(self, name):
        return self._shards[hash(name) & _MASK][name]

    def __contains__(self, name):
        return name in self._shards[hash(name) & _MASK]

    def __iter__(self):
        return chain.from_iterable(self._shards)

    def __len__(self):
        return sum(map(len, self._shards))

    def items(self):
        return chain.from_iterable(shard.items() for shard in self._shards)

    def values(self):
        return chain.from_iterable(shard.values() for shard in self._shards)

    def with_status(self, name, status):
        """A new table with ``name`` set to ``status``; it shares every other shard."""
        index = hash(name) & _MASK
        shard = dict(self._shards[index])
        shard[name] = status
        return UserTable._of(self._shards[:index] + (shard,) + self._shards[index + 1:])

    def release(self):
        """Empty this table entry by entry; only for a table no reader can reach any more.

        Dropping a million entries at once frees them in one C call that
        holds the GIL. Popped one by one, other threads get the GIL back at
        every switch interval. Popping a slice of every shard in turn frees
        entries in about the order they were made, so the allocator hands
        back its arenas as it goes rather than all at the last shard (a
        15 ms pause at a million entries). A shard that an older table
        still shares (see ``with_status``) is left alone.
        """
        shards = [shard for shard in self._shards
                  if sys.getrefcount(shard) <= _UNSHARED_REFERENCES]
        while shards:
            for shard in shards:
                for _ in range(min(_RELEASE_SLICE, len(shard))):
                    shard.popitem()
            shards = [shard for shard in shards if shard]


def references(table):
    """The reference count of ``table`` as a caller that holds it in one variable sees it."""
    return sys.getrefcount(table)


def _one_holder():
    table = UserTable._of(())
    return references(table)


#: ``references`` of a table held by the caller's one variable and nothing else,
#: measured rather than assumed, like ``_UNSHARED_REFERENCES``.
ONE_HOLDER = _one_holder()
