"""Accounts whose statuses are set over and over while a test does something to the
daemon, and what the users file must hold afterwards."""

import threading

#: Most sets an account makes, and seconds a set may take.
MOST_SETS = 100000
SET_TIMEOUT = 15


class SetLoops:
    """``count`` accounts (``setter0``...), each set in a loop on a thread of its own,
    every status sent kept with its reply (b"" for none: refused, reset or cut off)."""

    def __init__(self, count):
        self.users = [b"setter%d" % n for n in range(count)]
        self.replies = {user: [] for user in self.users}
        self._done = threading.Event()
        self._threads = []

    def users_file(self):
        """The users file to start the daemon with."""
        return b"".join(user + b":Start\n" for user in self.users)

    def start(self, daemon):
        self._threads = [threading.Thread(target=self._sets, args=(daemon, user))
                         for user in self.users]
        for thread in self._threads:
            thread.start()

    def _sets(self, daemon, user):
        for n in range(MOST_SETS):
            if self._done.is_set():
                return
            status = b"Set %d" % n
            try:
                reply = daemon.setter(user + b"\r\n" + status + b"\r\n", timeout=SET_TIMEOUT)
            except OSError:
                reply = b""
            self.replies[user].append((status, reply))

    def stop(self):
        self._done.set()
        for thread in self._threads:
            thread.join(2 * SET_TIMEOUT)
        assert not any(thread.is_alive() for thread in self._threads)

    def made_at_least(self, n):
        return all(len(made) >= n for made in self.replies.values())

    def check(self, users_file):
        """Each reply was OK, an ERROR or none, and each account's status in the file is
        the last one answered OK, or one sent after it that got no answer."""
        with open(users_file, "rb") as f:
            final = dict(line.split(b":", 1) for line in f.read().splitlines())
        for user, made in self.replies.items():
            assert all(reply in (b"OK\r\n", b"") or reply.startswith(b"ERROR")
                       for _, reply in made), made[-5:]
            last_ok = max((i for i, (_, reply) in enumerate(made) if reply == b"OK\r\n"),
                          default=None)
            assert last_ok is not None, made[-5:]
            unanswered = {status for status, reply in made[last_ok + 1:] if not reply}
            assert final[user] in {made[last_ok][0]} | unanswered, (final[user], made[-5:])
