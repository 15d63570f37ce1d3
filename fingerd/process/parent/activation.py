"""Listening sockets handed over by systemd (socket activation; sd_listen_fds(3)).

When ``LISTEN_PID`` is this process's pid, descriptors 3 to 3+``LISTEN_FDS``-1
are listening sockets that systemd bound, named by ``LISTEN_FDNAMES`` (one
name a descriptor, colon-separated: each ``.socket`` unit's
``FileDescriptorName=``). The root parent takes them before it binds or
detaches: after a fork the pid no longer matches (gunicorn #875). A role
that receives at least one socket serves on those and binds none of its
``listen`` addresses; a Unix-domain socket for the setter stands for
``[setter] socket``. The handed-over sockets stay the same for the
process's whole life: a reload neither closes, rebinds nor calls
``listen()`` again on them (systemd keeps its own copies, and a second
``listen()`` is what SELinux denies under Podman: gunicorn PR #3747).

``listed`` is the pure reading of the variables; ``take`` adopts the
descriptors.
"""

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from types import MappingProxyType
from typing import Callable, Optional

from fingerd.config import Config

#: The names a socket may have: the roles that serve on listening sockets.
ROLES = ("finger", "setter", "metrics", "web")
#: The variables of the protocol, all removed from the environment by ``take``.
VARIABLES = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: The first descriptor handed over (SD_LISTEN_FDS_START).
FIRST_FD = 3


class ActivationError(Exception):
    """The sockets handed over cannot be served; the message is one line naming why
    (what the variables say is quoted, so that a newline in them stays in it)."""


def listed(environ: Mapping[str, str], pid: int,
           own_pidfd_id: Callable[[], Optional[int]]) -> list[tuple[int, str]]:
    """``(descriptor, role)`` of each socket the variables in ``environ`` hand to the
    process ``pid``; none when they name another process. ``own_pidfd_id`` is the
    inode of that process's pidfd, or None where pidfds are missing: compared with
    ``LISTEN_PIDFDID`` where systemd sets it. Raises ActivationError."""
    if not _names_this_process(environ, pid, own_pidfd_id):
        return []
    text = environ.get("LISTEN_FDS", "0")
    if not (text.isascii() and text.isdigit()):
        raise ActivationError(f"LISTEN_FDS={text!r}: not a number of sockets")
    count = int(text)
    if count == 0:
        return []
    names = environ.get("LISTEN_FDNAMES")
    if names is None:
        raise ActivationError(f"systemd handed over {count} socket{'s' * (count > 1)} with "
                              f"no names (no LISTEN_FDNAMES): set FileDescriptorName= to "
                              f"{', '.join(ROLES)} in each .socket unit")
    split = names.split(":")
    if len(split) != count:
        raise ActivationError(f"systemd handed over {count} socket{'s' * (count > 1)} "
                              f"(LISTEN_FDS={count}) but named {len(split)} "
                              f"(LISTEN_FDNAMES={names!r})")
    for fd, name in enumerate(split, FIRST_FD):
        if name not in ROLES:
            raise ActivationError(f"socket {fd} from systemd is named {name!r} "
                                  f"(LISTEN_FDNAMES={names!r}): fingerd serves "
                                  f"{', '.join(ROLES)}; set FileDescriptorName= to one")
    return list(enumerate(split, FIRST_FD))


def _names_this_process(environ: Mapping[str, str], pid: int,
                        own_pidfd_id: Callable[[], Optional[int]]) -> bool:
    if environ.get("LISTEN_PID") != str(pid):
        return False
    pidfd_id = environ.get("LISTEN_PIDFDID")
    if pidfd_id is None:
        return True
    own = own_pidfd_id()
    return own is None or pidfd_id == str(own)


def own_pidfd_id() -> Optional[int]:
    """The inode of this process's pidfd (what ``LISTEN_PIDFDID`` names), or None
    where the kernel or Python has no pidfds."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return None
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def adopt(fd: int, role: str) -> socket.socket:
    """The listening socket ``fd``, handed over for ``role``, as a socket object that no
    child inherits; raises ActivationError when it is no socket ``role`` can serve on."""
    which = f"socket {fd} from systemd ({role})"
    try:
        # Family, type and protocol come from the descriptor: a dual-stack
        # ListenStream=79 is AF_INET6, never to be taken for AF_INET.
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ActivationError(f"{which}: not a socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM:
        raise ActivationError(f"{which}: not a stream socket (ListenStream=)")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ActivationError(f"{which}: not listening")
    if sock.family == socket.AF_UNIX and role != "setter":
        raise ActivationError(f"{which}: a Unix-domain socket, which only the setter "
                              f"serves on")
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        raise ActivationError(f"{which}: neither TCP nor Unix-domain")
    if role == "setter" and sock.family != socket.AF_UNIX and not _loopback(sock):
        # As [setter] listen, which takes loopback addresses only: ListenStream=1079
        # alone would put it on every address of the host.
        raise ActivationError(f"{which}: listens on {describe(sock)}, not a loopback "
                              f"address; the setter must stay local: set ListenStream= "
                              f"to 127.0.0.1:PORT or [::1]:PORT")
    sock.set_inheritable(False)
    return sock


def _loopback(sock: socket.socket) -> bool:
    """Whether the TCP socket ``sock`` is bound to a loopback address (an IPv4-mapped
    one included), which only this host's clients reach."""
    address = ipaddress.ip_address(sock.getsockname()[0].partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def describe(sock: socket.socket) -> str:
    """``HOST:PORT``, ``[HOST]:PORT`` or the path a listening socket is bound to; an
    abstract Unix socket's name as ss(8) shows it, ``@`` for each NUL (its first
    character included), which no log line holds."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return text.replace("\0", "@")
    return f"[{name[0]}]:{name[1]}" if sock.family == socket.AF_INET6 else \
        f"{name[0]}:{name[1]}"


Sockets = dict[str, list[socket.socket]]


@dataclasses.dataclass(frozen=True)
class Handover:
    """The sockets systemd handed over, by role (only roles that received one); the
    same for the process's whole life."""

    sockets: Mapping[str, tuple[socket.socket, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))

    def to_bind(self, config: Config) -> Config:
        """``config`` with only what this process binds itself: no ``listen`` addresses
        for a role that received sockets, no ``[setter] socket`` once the setter
        received a Unix-domain one."""
        changes: dict[str, object] = {f"{role}_listen": () for role in self.sockets}
        if any(sock.family == socket.AF_UNIX for sock in self.sockets.get("setter", ())):
            changes["setter_socket"] = ""
        return dataclasses.replace(config, **changes)  # type: ignore[arg-type]

    def merged(self, bound: Sockets) -> Sockets:
        """``bound`` (what ``to_bind``'s configuration bound) with the sockets handed over."""
        return {role: [*self.sockets.get(role, ()), *bound.get(role, ())] for role in ROLES}

    def others(self, sockets: Sockets) -> Sockets:
        """``sockets`` without those handed over: what a reload may keep, rebind or close."""
        handed = {id(sock) for socks in self.sockets.values() for sock in socks}
        return {role: [s for s in socks if id(s) not in handed]
                for role, socks in sockets.items()}

    def described(self, role: str) -> list[str]:
        """The addresses of ``role``'s sockets from systemd, for the log."""
        return [f"{describe(sock)} (from systemd)" for sock in self.sockets.get(role, ())]


#: No socket handed over: every role binds its configuration.
NO_HANDOVER = Handover()


def take(environ: MutableMapping[str, str] = os.environ) -> Handover:
    """The sockets systemd handed to this process, adopted; the variables are removed
    from ``environ`` whatever they say. Call it first, in the root parent, before
    anything binds, forks or detaches. Raises ActivationError."""
    try:
        found = listed(environ, os.getpid(), own_pidfd_id)
    finally:
        present = [name for name in VARIABLES if environ.pop(name, None) is not None]
        if present and environ is os.environ:
            _blank_at_exec(present)
    sockets: dict[str, list[socket.socket]] = {}
    for fd, role in found:
        sockets.setdefault(role, []).append(adopt(fd, role))
    return Handover(MappingProxyType({role: tuple(socks) for role, socks in sockets.items()}))


def _blank_at_exec(names: Sequence[str]) -> None:
    """Blank ``names`` in the environment block the kernel copied at exec too.

    ``/proc/PID/environ`` shows that block, of this process and of every worker it
    forks; unsetenv only drops the pointers to it, so the variables would still be
    seen there, naming a pid that is no longer the one to take them. Nothing points
    into their text once unset. Best effort: the environment itself is right already.
    """
    wanted = {name.encode() for name in names}
    try:
        with open("/proc/self/stat", "rb") as f:
            # proc(5): env_start and env_end are fields 50 and 51; the command's
            # name, field 2, may hold spaces and parentheses, so count after its end.
            fields = f.read().rpartition(b")")[2].split()
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            offset = start
            for entry in mem.read(end - start).split(b"\0"):
                if entry.partition(b"=")[0] in wanted:
                    mem.seek(offset)
                    mem.write(b"\0" * len(entry))
                offset += len(entry) + 1
    except (OSError, ValueError, IndexError):
        pass
