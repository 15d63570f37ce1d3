"""Answers that depend only on the query line and the user table, each made once per table.

A finger answer from the users file alone is the same for every client until
the table changes; rendering it again for each query is most of the Python
time a query costs. The cache is keyed by the raw query line and emptied
whenever the store publishes another table.
"""

import weakref


def _no_table():
    return None


class AnswerCache:
    """Answers made from the table ``current_table()`` returns, by query line.

    Owned by one thread (a server's reading thread), so it has no lock.
    Bounded: past ``limit`` bytes of lines and answers it starts again
    empty, so a client asking for ever new names costs a lookup each, as
    without a cache, and never memory. It holds the table only weakly, so
    a replaced table is freed as if the cache did not exist.
    """

    def __init__(self, current_table, limit):
        self._current = current_table
        self._limit = limit
        self._table = _no_table
        self._answers = {}
        self._size = 0

    def get(self, line, make, *args):
        """The answer to ``line``: one made from the current table, or ``make(*args)``."""
        table = self._current()
        if self._table() is not table:
            self._forget(table)
        answer = self._answers.get(line)
        if answer is None:
            answer = make(*args)
            if self._current() is table:
                self._keep(line, answer)
        return answer

    def _forget(self, table):
        self._table = weakref.ref(table)
        self._answers = {}
        self._size = 0

    def _keep(self, line, answer):
        size = len(line) + len(answer.data)
        if self._size + size > self._limit:
            self._answers = {}
            self._size = 0
        self._answers[line] = answer
        self._size += size
