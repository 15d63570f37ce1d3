"""The table of user statuses: a read-only mapping split into shards by hash.

CPython grows a dict by rehashing every entry in one C call that holds the
GIL: about 30 ms for the last growth of a million-entry table, a pause every
query would wait out during a reload. Each shard here grows on its own and
holds 1/SHARDS of the entries, so no single step of a build holds the GIL
for long, and setting one status copies one shard rather than the table.
"""

import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Optional, TypeVar, Union, overload

#: Shards of every table; a power of two, so a hash picks one with a mask.
SHARDS = 64
_MASK = SHARDS - 1
#: Entries ``free_gradually`` pops from one shard before moving to the next.
_FREE_SLICE = 64
#: Seconds ``free_gradually`` waits for the last reader of a replaced table.
FREE_WAIT = 1.0


class _Generation:
    """Shared by a built table and every table derived from it; alive while any of them is.

    Shards are shared only within a generation (``with_status``), so once
    it is gone nothing but its freer can reach the shards of its tables.
    """

    __slots__ = ("__weakref__",)


_T = TypeVar("_T")


class UserTable(Mapping[str, str]):
    """Name to status; never changed once built, so readers need no lock.

    An iteration holds the table itself, not only its shards, so that the
    table's generation outlives every reader.
    """

    __slots__ = ("_shards", "_generation", "__weakref__")

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        shards: tuple[dict[str, str], ...] = tuple({} for _ in range(SHARDS))
        for name, status in entries:
            shards[hash(name) & _MASK][name] = status
        self._shards = shards
        self._generation = _Generation()

    @classmethod
    def _of(cls, shards: tuple[dict[str, str], ...], generation: _Generation) -> "UserTable":
        table = cls.__new__(cls)
        table._shards = shards
        table._generation = generation
        return table

    @overload
    def get(self, name: str, /) -> Optional[str]: ...

    @overload
    def get(self, name: str, default: Union[str, _T], /) -> Union[str, _T]: ...

    def get(self, name: str, default: object = None) -> object:
        return self._shards[hash(name) & _MASK].get(name, default)

    def __getitem__(self, name: str) -> str:
        return self._shards[hash(name) & _MASK][name]

    def __contains__(self, name: object) -> bool:
        return name in self._shards[hash(name) & _MASK]

    def __iter__(self) -> Iterator[str]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    # Generators rather than Mapping's views: the table is only ever iterated.
    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        for shard in self._shards:
            yield from shard.items()

    def values(self) -> Iterator[str]:  # type: ignore[override]
        for shard in self._shards:
            yield from shard.values()

    def with_status(self, name: str, status: str) -> "UserTable":
        """A new table with ``name`` set to ``status``; it shares every other shard."""
        index = hash(name) & _MASK
        shard = dict(self._shards[index])
        shard[name] = status
        return self._with_shard(index, shard)

    def without(self, name: str) -> "UserTable":
        """A new table without ``name`` (this one if it has no such user)."""
        index = hash(name) & _MASK
        if name not in self._shards[index]:
            return self
        shard = dict(self._shards[index])
        del shard[name]
        return self._with_shard(index, shard)

    def _with_shard(self, index: int, shard: dict[str, str]) -> "UserTable":
        return UserTable._of(self._shards[:index] + (shard,) + self._shards[index + 1:],
                             self._generation)


def free_gradually(holder: list[UserTable], wait: float = FREE_WAIT) -> None:
    """Free the replaced table in ``holder`` a few entries at a time, once no reader has it.

    Dropping a million entries at once frees them in one C call that holds
    the GIL for tens of milliseconds. A published table is never changed, so
    this first lets go of the table and waits (at most ``wait`` seconds)
    until its generation is gone: then no table that could hold these shards
    exists, and they are this function's alone. It empties them a slice of
    each in turn, so other threads get the GIL between slices and the
    allocator hands arenas back as it goes (entries leave newest first
    across the whole file), rather than in one burst at the last shard. If a
    reader still holds the generation at ``wait``, the shards are left to it.
    """
    table = holder.pop()
    shards = list(table._shards)
    generation = weakref.ref(table._generation)
    del table
    deadline = time.monotonic() + wait
    while generation() is not None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)
    while shards:
        for shard in shards:
            for _ in range(min(_FREE_SLICE, len(shard))):
                shard.popitem()
        shards = [shard for shard in shards if shard]
