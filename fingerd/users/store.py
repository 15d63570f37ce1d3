"""The user table shared by every service, and its users file.

Readers read ``table``, a UserTable that is never changed once published:
one attribute load, no call, no lock, and a whole generation of the table.
Writers (a reload, a setter) hold the store's lock, build the next table
aside and publish it with one assignment, so a query never waits for a file
to be read and never sees half a table.
"""

import gc
import logging
import os
import threading
import time
from typing import Any, NamedTuple, Optional

from fingerd.users import fileio
from fingerd.users.editing import SET_DONE, StatusWriter, StoreError, Written
from fingerd.users.table import UserTable, free_gradually
from fingerd.users.usersfile import UsersFileError, parse_users

log = logging.getLogger(__name__)


class Fallback(NamedTuple):
    """At a worker's start the users file could not be served, and the table the
    previous worker served is served instead: ``reason`` (``FILE:LINE: message`` or
    ``FILE: why``) and how many ``users`` that table holds."""

    reason: str
    users: int

    def rejected(self) -> str:
        """The one line that says so, as a reload reports it."""
        return f"users file rejected: {self.reason}; {self.users} users still served"


class _WrittenHere:
    """A store's own writer, which logs each set it wrote as the parent does a worker's."""

    def __init__(self) -> None:
        self._writer = StatusWriter()

    def __call__(self, path: str, name: str, status: str, by: str) -> Written:
        written = self._writer(path, name, status)
        log.info(SET_DONE, by, name)
        return written


class UserStore:
    """Lock-protected table of user statuses backed by the users file at ``path``."""

    def __init__(self, path, metrics, writer=None, snapshot=None):
        self.path = path
        #: ``writer(path, name, status, by)`` writes a set and logs it: the parent on
        #: the worker's behalf, or, by default, this process.
        self._writer = writer or _WrittenHere()
        #: Where the last good table is kept for the next worker (snapshot.py), or None.
        self._snapshot = snapshot
        self._metrics = metrics
        #: The current table; readers must not change it.
        self.table = UserTable()
        self._signature = None
        self._failed_signature = None
        #: Tables published so far, so that a reload can tell one came in meanwhile.
        self._published = 0
        self._lock = threading.Lock()

    def load(self, fallback: bool = True) -> Optional[Fallback]:
        """First read at a worker's start: raise UsersFileError or OSError rather than
        serve a bad file.

        A missing file starts an empty table, with a warning. With ``fallback``, a
        file that is missing, cannot be read or parsed serves the snapshot's table
        instead, if any: counted as a failed reload, and returned, for the caller
        to report once (None when the file itself is served).
        """
        with self._lock:
            sig = None
            try:
                data, sig = fileio.read_bounded(self.path)
                users = parse_users(data, self.path)
            except (OSError, UsersFileError) as exc:
                kept = self._load_snapshot(exc, sig) if fallback else None
                if kept is not None:
                    return kept
                if not isinstance(exc, FileNotFoundError):
                    raise
                log.warning("%s: no users file; starting with no users", self.path)
                self._publish(UserTable(), None)
                # Said once: the checks that follow find it missing still, which is no
                # failed reload (nor an error in the log) until a file has been served.
                self._failed_signature = "missing"
                return None
            self._publish(users, sig)
            read_at = self._count_success()
            self._keep(lambda snapshot: snapshot.save(data, read_at))
            return None

    def _load_snapshot(self, problem: Exception, sig: Any) -> Optional[Fallback]:
        """After ``problem`` with the file at a start (``sig``, the signature of the bytes
        refused, if read): serve the table the previous worker served, if it left one,
        counting a failed reload; what to report, or None."""
        users = self._snapshot.load_table() if self._snapshot is not None else None
        if users is None:
            return None
        self._publish(users, None)
        # Kept in this worker's own snapshot, for its successor.
        self._keep(lambda snapshot: snapshot.save_table(users))
        # The previous worker's last good read is this one's too: the table is its file's.
        self._metrics.last_reload_success.set(self._snapshot.read_at)
        if isinstance(problem, UsersFileError):
            # The bytes refused, not the file as it is now: one fixed meanwhile is read.
            self._failed_signature = sig
            reason = str(problem).split("\n")[0] + (
                f" (and {len(problem.errors) - 1} more)" if len(problem.errors) > 1 else "")
        else:
            assert isinstance(problem, OSError)
            self._failed_signature = "missing" if isinstance(problem, FileNotFoundError) \
                else ("unreadable", problem.errno)
            reason = f"{self.path}: {problem.strerror or problem}"
        self._metrics.reloads.labels("failure").inc()
        return Fallback(reason, len(users))

    def _keep(self, save):
        """Keep a table for the next worker with ``save(snapshot)``; never fails a reload.

        Called with the lock held at each change of the table, so that the snapshot
        always holds what is served: the file last read, and the sets since."""
        if self._snapshot is not None:
            try:
                save(self._snapshot)
            except OSError as exc:
                log.warning("cannot keep the table for the next worker: %s", exc)

    def reload(self, force=False):
        """Read the users file again if it changed (or always, with ``force``).

        A file that cannot be read or parsed keeps every previous entry, is
        logged once per version and counted as a failed reload. Returns True
        when a new table was published. The file is read and parsed without
        the lock, so a set never waits for the disk; if a set publishes
        meanwhile, this reload gives way and the next check reads again.
        """
        with self._lock:
            seen = () if force else tuple(
                sig for sig in (self._signature, self._failed_signature) if sig is not None)
            published = self._published
        try:
            data, sig = fileio.read_bounded(self.path, unless=seen)
        except FileNotFoundError:
            return self._fail("missing", force, f"{self.path}: users file missing; "
                                                f"keeping {len(self.table)} users")
        except OSError as exc:
            return self._fail(("unreadable", exc.errno), force,
                              f"{self.path}: cannot read users file: {exc.strerror or exc}")
        if data is None:
            return False
        try:
            users = parse_quietly(data, self.path)
        except UsersFileError as exc:
            return self._fail(sig, force, f"{exc}\n{self.path}: users file rejected; "
                                          f"keeping {len(self.table)} users")
        with self._lock:
            if self._published != published:
                return False
            replaced = [self.table]
            self._publish(users, sig)
            read_at = self._count_success()
            # Under the lock: a set's record must come after the file it was set in.
            self._keep(lambda snapshot: snapshot.save(data, read_at))
        log.info("%s: read %d users", self.path, len(users))
        free_gradually(replaced)
        return True

    def set_status(self, name, status, by):
        """Set ``name``'s status (creating the user), durably, then publish it.

        The file is written by ``writer`` (a StatusWriter in this process,
        or the privileged parent on the worker's behalf), which logs the set
        as made ``by`` this client (setter.who). Raises StoreError,
        with memory and file unchanged, when it cannot be written, or when the
        file is missing while users are served: a file created with this one
        line would lose every other entry at the next read. (The check and the
        parent's write are not one step: a file removed between the two is
        created, as by a set on a daemon started without one.) Raises
        OutcomeUnknown, memory unchanged, when the file may have been written:
        the next reload reads it if it was.
        """
        with self._lock:
            if self.table and _missing(self.path):
                raise StoreError("users file missing; restore it first")
            old_sig, new_sig = self._writer(self.path, name, status, by)
            if old_sig is not None and old_sig == self._signature:
                users, data = self.table.with_status(name, status), None
            else:
                try:
                    data, new_sig = fileio.read_bounded(self.path)
                    users = parse_users(data, self.path)
                except (OSError, UsersFileError):
                    users, data, new_sig = self.table.with_status(name, status), None, None
            self._publish(users, new_sig)
            # A file someone else changed, read whole and good: the read the next check
            # would have made and counted (it finds the file unchanged now), so counted
            # here; after a failed one, the metrics' last word. (A file this set made,
            # where there was none, is no one else's.)
            edited = data is not None and old_sig is not None
            read_at = self._count_success() if edited else None
            # For the next worker: the file read back, or this set after what it kept.
            if data is not None:
                self._keep(lambda snapshot: snapshot.save(data, read_at))
            else:
                self._keep(lambda snapshot: snapshot.add_set(name, status)
                           or snapshot.save_table(users))
        if edited:
            log.info("%s: read %d users", self.path, len(users))

    def _publish(self, users, sig):
        self.table = users
        self._signature = sig
        self._failed_signature = None
        self._published += 1
        self._metrics.users.set(len(users))

    def _count_success(self):
        """Count a good read of the file; when it was."""
        now = time.time()
        self._metrics.reloads.labels("success").inc()
        self._metrics.last_reload_success.set(now)
        return now

    def _fail(self, sig, force, message):
        """Log and count a failed reload once per version of the file (every time if
        forced); False, for ``reload`` to return."""
        with self._lock:
            if sig is not None and sig == self._failed_signature and not force:
                return False
            self._failed_signature = sig
        self._metrics.reloads.labels("failure").inc()
        log.error("%s", message)
        return False


def _missing(path: str) -> bool:
    """Whether nothing at all is at ``path`` (a link, even dangling, is something)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def parse_quietly(data, path):
    """parse_users with the cyclic garbage collector held off.

    A big file makes a million new objects; each collection pass they
    trigger would scan them all while holding the GIL, stalling queries for
    tens of milliseconds. The parse creates no reference cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return parse_users(data, path)
    finally:
        if enabled:
            gc.enable()
