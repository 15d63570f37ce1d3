"""Where answers about users come from: the users file, then the system's accounts.

A source has two calls: ``lookup(name, verbose)`` gives the answer lines for
a user or None, and ``listing()`` yields ``(name, line)`` for the online
list, each line ``NAME: DETAIL``. The Directory asks its sources in order,
so the users file wins over an account of the same name, and a new source
needs no change to the servers. A source that may block beyond the daemon's
control is asked through a BoundedSource.
"""

import logging
import pwd
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Optional, Protocol, TypeVar

from fingerd.finger import logins
from fingerd.finger.bounded import BoundedCalls, HangLog, Unfinished
from fingerd.finger.homefiles import opted_out, read_user_file
from fingerd.finger.longform import Person, Where, long_answer, parse_gecos
from fingerd.finger.utmp import Session
from fingerd.users.usersfile import is_valid_name

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: nobody's uid, the kernel's overflow uid: an account for what has no owner, shared by
#: every service that runs as it, never a person, whatever ``min_uid`` and ``max_uid`` say.
NOBODY_UID = 65534


class Source(Protocol):
    """A source of answers about users: the two calls this module describes."""

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]: ...

    def listing(self) -> Iterable[tuple[str, str]]: ...


class Store(Protocol):
    """The users file's table, as the store publishes it: a plain attribute, replaced
    whole and never changed once published."""

    @property
    def table(self) -> Mapping[str, str]: ...


class FileSource:
    """The users file: the store's current table, read as the attribute it is."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]:
        status = self._store.table.get(name)
        if status is None:
            return None
        return [f"Login: {name}", f"Status: {status}"] if verbose else [status]

    def listing(self) -> Iterator[tuple[str, str]]:
        for name, status in self._store.table.items():
            yield name, f"{name}: {status}"


class SystemSource:
    """The system's accounts with a uid from ``min_uid`` to ``max_uid``, but nobody's, and no
    ``~/.nofinger``.

    The short answer gives the login and full name (GECOS); the long one
    (``/W``) is laid out as Debian's in.fingerd lays it out (longform): office
    and phones, sessions from utmp or the last login (lastlog, else wtmp),
    the mail spool's state and the user's plan files. No external program
    is run.
    """

    def __init__(self, min_uid: int, max_uid: int, plan_files: Sequence[str],
                 plan_max_bytes: int, utmp_file: str, clock: Callable[[], float] = time.time,
                 lastlog_file: str = logins.LASTLOG_FILE, wtmp_file: str = logins.WTMP_FILE,
                 mail_dir: str = logins.MAIL_DIR) -> None:
        self.min_uid = min_uid
        self.max_uid = max_uid
        self.plan_files = plan_files
        self.plan_max_bytes = plan_max_bytes
        self.utmp_file = utmp_file
        self.lastlog_file = lastlog_file
        self.wtmp_file = wtmp_file
        self.mail_dir = mail_dir
        self._clock = clock

    def _account(self, name: str) -> Optional[pwd.struct_passwd]:
        if not is_valid_name(name):
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        if not self.min_uid <= entry.pw_uid <= self.max_uid or entry.pw_uid == NOBODY_UID \
                or opted_out(entry.pw_dir):
            return None
        return entry

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]:
        entry = self._account(name)
        if entry is None:
            return None
        if not verbose:
            return [f"Login: {entry.pw_name:<24} Name: {full_name(entry)}"]
        now = self._clock()
        return long_answer(self._person(entry, now), now)

    def _person(self, entry: pwd.struct_passwd, now: float) -> Person:
        login = entry.pw_name
        return Person(
            login, parse_gecos(entry.pw_gecos, login), entry.pw_dir, entry.pw_shell,
            sessions=tuple(Where(s.line, s.host, s.login_time, *logins.terminal(s.line, now))
                           for s in self.sessions() if s.user == login),
            last_login=logins.last_login(entry.pw_uid, login, self.lastlog_file,
                                         self.wtmp_file),
            mail=logins.mail_state(login, self.mail_dir),
            files=tuple((name, read_user_file(entry.pw_dir, name, entry.pw_uid,
                                              self.plan_max_bytes))
                        for name in self.plan_files),
            max_bytes=self.plan_max_bytes)

    def listing(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        for session in self.sessions():
            if session.user in seen:
                continue
            seen.add(session.user)
            entry = self._account(session.user)
            if entry is not None:
                yield entry.pw_name, f"{entry.pw_name}: {full_name(entry)} ({session.line})"

    def sessions(self) -> list[Session]:
        return logins.sessions(self.utmp_file)


class BoundedSource:
    """``source`` asked within ``timeout`` seconds: each whole answer is one bounded call
    (bounded.py), at most ``limit`` unfinished at once, stuck ones included.

    For the system's accounts, whose every answer may block for good: NSS
    (an LDAP or sssd server that hangs), the home directory (a hung NFS
    server), the login records. An answer not made in time, or refused
    because ``limit`` are unfinished, raises Unfinished, which the servers
    answer as an internal error. The first of a streak is logged, naming
    what hung; the rest are not, until an answer is made in time again with
    no call left stuck, which is logged once too.

    List queries that come while a listing is being made share it rather than
    each make their own: a listing reads every login record and looks up each
    account, and several at once (a long utmp) would each take longer than a
    hung lookup may (bounded.STUCK_AFTER), failing the lookups of everyone else.
    """

    def __init__(self, source: Source, timeout: float, limit: int) -> None:
        self.source = source
        self.timeout = timeout
        self._calls = BoundedCalls(limit, "account lookup")
        self._hangs = HangLog(self._calls, log, "system accounts",
                              "answered 'Internal error in server'")
        self._lock = threading.Lock()
        #: The listing being made, which list queries coming meanwhile wait for.
        self._listing: Optional[_Shared] = None

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]:
        return self._bounded(f"looking up {name!r}", self.source.lookup, name, verbose)

    def listing(self) -> list[tuple[str, str]]:
        with self._lock:
            shared = self._listing
            making = shared is None
            if shared is None:
                shared = self._listing = _Shared()
        if not making:
            return shared.wait(self.timeout)
        try:
            shared.value = self._bounded("listing the logged-in accounts", self._listed)
        except BaseException as exc:
            shared.error = exc
            raise
        finally:
            with self._lock:
                self._listing = None
            shared.done.set()
        return shared.value

    def _listed(self) -> list[tuple[str, str]]:
        return list(self.source.listing())

    def _bounded(self, what: str, fn: Callable[..., _T], *args: object) -> _T:
        try:
            value = self._calls.call(self.timeout, fn, *args)
        except Unfinished as exc:
            self._hangs.unfinished(what, exc)
            raise
        self._hangs.finished()
        return value


class _Shared:
    """A listing being made, for the queries that wait for it: its value, or what it
    raised, once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: list[tuple[str, str]] = []
        self.error: Optional[BaseException] = None

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        if not self.done.wait(timeout):
            raise Unfinished(f"listing the logged-in accounts took longer than {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.value


def full_name(entry: pwd.struct_passwd) -> str:
    """The full name from GECOS: its first field, ``&`` standing for the login capitalised."""
    return parse_gecos(entry.pw_gecos, entry.pw_name).name


#: The list's last line when it is cut.
MORE_USERS = "(more users not shown)"


class Directory:
    """Sources asked in order: the first that knows a name answers."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.sources = tuple(sources)

    def lookup(self, name: str, verbose: bool) -> Optional[list[str]]:
        for source in self.sources:
            lines = source.lookup(name, verbose)
            if lines is not None:
                return lines
        return None

    def listing(self, limit: int) -> list[str]:
        """One line a user across every source (first source wins a name), cut past
        ``limit`` characters with a closing note."""
        entries, cut = self.entries(limit)
        return [line for _name, line in entries] + ([MORE_USERS] if cut else [])

    def entries(self, limit: int) -> tuple[list[tuple[str, str]], bool]:
        """``([(name, line), ...], cut)``: the users ``listing`` shows, and whether it
        leaves some out.

        Each source's lines are sorted by name. Only the lines taken are
        sorted, so the cost follows the size of the answer, not of the table.
        """
        entries: list[tuple[str, str]] = []
        seen: set[str] = set()
        size = 0
        for source in self.sources:
            taken: list[tuple[str, str]] = []
            for name, line in source.listing():
                if name in seen:
                    continue
                seen.add(name)
                size += len(line) + 2
                if size > limit:
                    return entries + sorted(taken), True
                taken.append((name, line))
            entries += sorted(taken)
        return entries, False


