"""Whether another program holds an address a start would bind, or its host is not on
this machine, for ``fingerd -t``.

The init script's ``restart`` runs ``fingerd -t`` before it stops anything, so
an address taken meanwhile by another program, or one edited into the
configuration that no interface has, refuses the restart and leaves
the running daemon running, instead of stopping it for a start that fails.

No configured port is bound: a TCP address is held when the kernel's tables
of bound sockets (/proc/net/tcp, tcp6) show one a start's bind would clash
with, and the setter's Unix socket when a socket file there is served by
someone. A TCP address nobody holds is bound on a port of the kernel's choosing
instead, closed at once, to tell whether its host is an address of this machine.
An address held by the running daemon named by the configuration's pidfile
is no problem, since a restart stops that daemon first; nor is one systemd
holds for a .socket unit, since a start by systemd is handed that socket
and binds nothing there (fingerd(8), SOCKET ACTIVATION). Their descriptors
name the inodes of their sockets, matched against the kernel's tables of
listening sockets (/proc/net/tcp, tcp6, unix).

What cannot be checked is skipped rather than failed: without root, which
program holds an address while a daemon runs (its descriptors are root's to
read).

For fingerd-ctl, when the pidfile names no daemon running, the same tables
tell whether a fingerd holds the configured addresses all the same (its
pidfile changed in the configuration, or removed with its lock, since it
started), so that stop does not say it stopped what still runs.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Iterable, Iterator

from fingerd.config import Address, Config
from fingerd.process.parent.descendants import processes
from fingerd.process.parent.listeners import NO_SUCH_ADDRESS, bind_tcp, socket_directory_problem
from fingerd.process.pidfile import RUNNING, probe
from fingerd.serving.peer_owner import proc_address

#: /proc/net/tcp's states of a socket bound to a local address: listening, or bound only.
BOUND_STATES = frozenset({"0A", "07"})
#: /proc/net/unix's flag of a listening socket (__SO_ACCEPTCON).
ACCEPTING = 0x10000


def held_addresses(config: Config) -> list[str]:
    """``FILE:LINE: [section] key: ...`` for each configured address another program
    holds or whose host is not on this machine, and for a setter socket whose directory
    a start would refuse or could not make; empty when a start or restart would bind
    them all."""
    daemon = daemon_sockets(config.pidfile)
    if daemon is not None:
        daemon |= systemd_sockets()
    problems = []
    for section, addresses in (("finger", config.finger_listen),
                               ("setter", config.setter_listen),
                               ("metrics", config.metrics_listen),
                               ("web", config.web_listen)):
        for address in addresses:
            holders = set(tcp_holders(address))
            # One bound already (by a .socket unit with FreeBind=, say) is judged by its
            # holder alone.
            if held_by_another(holders, daemon):
                said = f"{address} is in use by another program"
            elif not holders and not_local(address):
                said = f"{address}: {NO_SUCH_ADDRESS}"
            else:
                continue
            problems.append(f"{config.where(section, 'listen')}: [{section}] listen: {said}")
    if config.setter_socket:
        problem = (socket_directory_problem(config.setter_socket, "[setter] socket")
                   or unix_problem(config.setter_socket, daemon))
        if problem:
            problems.append(f"{config.where('setter', 'socket')}: [setter] socket: "
                            f"{config.setter_socket}: {problem}")
    return problems


def daemon_sockets(pidfile: str) -> frozenset[int] | None:
    """The inodes of the sockets of the daemon that holds ``pidfile``'s lock: empty when
    none runs, None when one runs whose descriptors this process may not read."""
    try:
        state, pid = probe(pidfile)
    except OSError:
        return None
    if state != RUNNING or pid is None:
        return frozenset()
    try:
        return socket_inodes(pid)
    except OSError:
        return None


def systemd_sockets() -> frozenset[int]:
    """The inodes of the sockets systemd holds, its .socket units' among them: empty
    where process 1 is not systemd, or its descriptors are root's to read."""
    try:
        with open("/proc/1/comm") as f:
            if f.read().strip() != "systemd":
                return frozenset()
        return socket_inodes(1)
    except OSError:
        return frozenset()


def socket_inodes(pid: int) -> frozenset[int]:
    """The inodes of process ``pid``'s sockets; raise OSError when its descriptors cannot
    be listed."""
    fd_dir = f"/proc/{pid}/fd"
    inodes = set()
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[len("socket:["):-1]))
    return frozenset(inodes)


def held_by_another(holders: set[int], daemon: frozenset[int] | None) -> bool:
    """Whether a socket not the daemon's is among ``holders``, the sockets bound where a
    start would bind an address (``tcp_holders``); False for whatever cannot be told (see
    the module's docstring)."""
    return daemon is not None and bool(holders) and not holders <= daemon


def not_local(address: Address) -> bool:
    """Whether ``address``'s host is no address of this machine, which a start's bind
    refuses (EADDRNOTAVAIL): told by binding the host alone, as a start binds it, on an
    ephemeral port (0) closed at once, never on the configured port the running daemon
    may hold."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            bind_tcp(sock, address.host, 0)
    except OSError as exc:
        return exc.errno == errno.EADDRNOTAVAIL
    return False


def tcp_holders(address: Address) -> Iterator[int]:
    """The inodes of the bound TCP sockets whose address conflicts with ``address``: an
    IPv4 one may conflict with an IPv6 socket (dual-stack), an IPv6 one, bound
    IPV6_V6ONLY as a start binds it, with IPv6 sockets only."""
    wanted = ipaddress.ip_address(address.host)
    tables = ((4, "/proc/net/tcp"), (6, "/proc/net/tcp6"))
    for version, path in tables[1:] if address.family == 6 else tables:
        try:
            with open(path) as f:
                yield from conflicting(f, version, wanted, address.port)
        except OSError:
            continue


def conflicting(lines: Iterable[str], version: int,
                wanted: ipaddress.IPv4Address | ipaddress.IPv6Address,
                port: int) -> Iterator[int]:
    """From the lines of /proc/net/tcp (``version`` 4) or tcp6 (6): the inodes of the
    sockets bound to ``port`` on ``wanted``, or where either address is a wildcard (an
    IPv6 one, without IPV6_V6ONLY, covering IPv4 too)."""
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] not in BOUND_STATES:
            continue
        try:
            local, local_port = proc_address(fields[1], version)
            inode = int(fields[9])
        except ValueError:
            continue
        if local_port != port or (local.version != wanted.version and not local.is_unspecified):
            continue
        if local == wanted or local.is_unspecified or wanted.is_unspecified:
            yield inode


def unix_problem(path: str, daemon: frozenset[int] | None) -> str | None:
    """What keeps a start from listening at ``path``, or None: a file that is not a
    socket, or a socket another program serves."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if not stat.S_ISSOCK(mode):
        return "a file that is not a socket is in the way"
    if daemon is None:
        return None
    if daemon & set(unix_listeners(path)):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_sock:
        probe_sock.setblocking(False)
        try:
            probe_sock.connect(path)
        except BlockingIOError:
            pass
        except OSError:
            return None
    return "another program serves it"


def unix_listeners(path: str) -> Iterator[int]:
    """The inodes of the listening Unix sockets bound to ``path`` (/proc/net/unix)."""
    try:
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines[1:]:
        fields = line.split(maxsplit=7)
        if len(fields) == 8 and fields[7] == path and int(fields[3], 16) & ACCEPTING:
            yield int(fields[6])


def running_elsewhere(config: Config) -> tuple[int, str] | None:
    """``(pid, address)`` of a fingerd's root parent holding one of ``config``'s
    addresses, for fingerd-ctl when the pidfile names no daemon running; None when none
    does, or when this account may not read the holders' descriptors (without root)."""
    wanted = {inode: str(address)
              for address in (*config.finger_listen, *config.setter_listen,
                              *config.metrics_listen, *config.web_listen)
              for inode in tcp_holders(address)}
    if config.setter_socket:
        wanted.update(dict.fromkeys(unix_listeners(config.setter_socket), config.setter_socket))
    if not wanted:
        return None
    holders = {}  # the fingerd processes holding one: their parents, and one they hold
    for proc in processes():
        try:
            held = socket_inodes(proc.pid) & wanted.keys()
            if held and runs_fingerd(proc.pid):
                holders[proc.pid] = (proc.ppid, wanted[min(held)])
        except OSError:
            continue
    # The root parent, not its worker or writer child, which hold the sockets too.
    return next(((pid, address) for pid, (parent, address) in sorted(holders.items())
                 if parent not in holders), None)


def runs_fingerd(pid: int) -> bool:
    """Whether process ``pid`` runs the fingerd command: its program, or the script its
    interpreter runs, is named fingerd, or it runs ``python3 -m fingerd``."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    return (any(os.path.basename(arg) == b"fingerd" for arg in args[:2])
            or any(pair == (b"-m", b"fingerd") for pair in zip(args, args[1:])))
