"""Binding the listening sockets, before anything else runs.

Only this module binds. The servers adopt what it returns, so that a
privileged parent can bind and an unprivileged process serve.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from functools import partial

from fingerd.config import Address, Config
from fingerd.process.parent.low_ports import may_bind_low_ports, needs_capability
from fingerd.users.fileio import unsafe_ownership

UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


class BindError(OSError):
    """A listening socket could not be made; the message is one line for the operator."""


class SocketPathRefused(BindError):
    """A Unix socket's path fingerd refuses to bind at (its directory unsafe, a file in
    the way): no retry mends it until the operator acts, so a start exits EX_CONFIG."""


#: Why a configured host cannot be listened on (EADDRNOTAVAIL), said by a start and by -t.
NO_SUCH_ADDRESS = "no such address on this machine"


def bind(address: Address, backlog: int, option: str) -> socket.socket:
    """A listening TCP socket on ``address``; ``option`` names the setting, for errors."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        bind_tcp(sock, address.host, address.port)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(_explain(exc, address, option)) from None
    return sock


def bind_tcp(sock: socket.socket, host: str, port: int) -> None:
    """Bind ``sock`` as a start binds its listening sockets: SO_REUSEADDR, and an IPv6
    one for IPv6 alone (and as ``fingerd -t`` binds a host to tell it is local)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))


def _explain(exc: OSError, address: Address, option: str) -> str:
    if exc.errno == errno.EACCES and address.port < 1024 and os.geteuid() != 0:
        return _needs_root(address, option, 1024)
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address} ({option}): address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address} ({option}): {NO_SUCH_ADDRESS}"
    return f"cannot listen on {address} ({option}): {exc.strerror or exc}"


def _needs_root(address: Address, option: str, first_free: int) -> str:
    return (f"cannot listen on {address} ({option}): ports below {first_free} need root; "
            f"start as root or set {option} to a port of {first_free} or more")


def _plan(config: Config) -> tuple[tuple[str, str, tuple[Address, ...]], ...]:
    return (("finger", "[finger] listen", config.finger_listen),
            ("setter", "[setter] listen", config.setter_listen),
            ("metrics", "[metrics] listen", config.metrics_listen),
            ("web", "[web] listen", config.web_listen))


def privileged_port_problem(config: Config) -> str | None:
    """Why this process may not bind a configured port, or None; checked before anything else."""
    root = os.geteuid() == 0
    if root and may_bind_low_ports():
        return None
    try:
        with open(UNPRIVILEGED_PORT_START) as f:
            first_free = int(f.read())
    except (OSError, ValueError):
        first_free = 1024
    for _, option, addresses in _plan(config):
        for address in addresses:
            if address.port < first_free:
                return (needs_capability if root else _needs_root)(address, option, first_free)
    return None


#: Mode of the setter's Unix socket: any local user may connect; the setter's
#: policy, not the file's mode, decides what each may do.
UNIX_SOCKET_MODE = 0o666

#: Mode of the socket's directory when fingerd creates it.
SOCKET_DIRECTORY_MODE = 0o755


def bind_unix(path: str, backlog: int, option: str) -> socket.socket:
    """A listening Unix stream socket at ``path``, replacing a stale one left by a dead
    daemon; its directory is created (0755) if missing.

    Root binds it, so whoever could change the directory could have root
    change files of their choosing: the directory must be root's and
    writable by no one else, as the users file's (fileio), and is opened
    ``O_DIRECTORY | O_NOFOLLOW``; a stale socket is removed through that
    descriptor; the socket is born with its final mode, bound under a umask,
    so no operation by path follows the bind for a swapped-in symbolic link to
    redirect. Anything else is refused with a one-line BindError. The
    directory's own ancestors are not checked.
    """
    directory, name = os.path.split(path)
    in_the_way = _not_a_directory(directory)
    if in_the_way is not None:
        raise SocketPathRefused(f"cannot listen on {path} ({option}): {in_the_way} is not a "
                                f"directory")
    try:
        with _born(SOCKET_DIRECTORY_MODE):  # whatever the umask (systemd's unit: 0077)
            os.makedirs(directory, SOCKET_DIRECTORY_MODE, exist_ok=True)
        dir_fd = _open_directory(directory, path, option)
        try:
            _remove_stale_in(dir_fd, name, path, option)
            return _listening_unix(path, backlog)
        finally:
            os.close(dir_fd)
    except BindError:
        raise
    except OSError as exc:
        raise BindError(f"cannot listen on {path} ({option}): {exc.strerror or exc}") from None


@contextlib.contextmanager
def _born(mode: int) -> Iterator[None]:
    """Files made meanwhile are born ``mode``: the umask that gives it, put back after.

    The umask is the whole process's: the parent, the only caller, has no other
    thread.
    """
    old = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(old)


def _listening_unix(path: str, backlog: int) -> socket.socket:
    """A Unix stream socket listening at ``path``, its file born UNIX_SOCKET_MODE."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _born(UNIX_SOCKET_MODE):
            sock.bind(path)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _open_directory(directory: str, path: str, option: str) -> int:
    """A descriptor of ``directory`` once it is known safe for root to bind in; else
    BindError saying what to fix, in the users file's words."""
    try:
        return _safe_directory(directory, option)
    except UnsafeDirectory as exc:
        raise SocketPathRefused(f"cannot listen on {path} ({option}): {exc}") from None


def _not_a_directory(directory: str) -> str | None:
    """The nearest of ``directory`` and its ancestors that exists, if it is no directory:
    what keeps ``bind_unix`` from making the directories missing."""
    existing = directory
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    return None if os.path.isdir(existing) else existing


class UnsafeDirectory(ValueError):
    """A directory root must not bind a socket in; the text says what to fix."""


def _safe_directory(directory: str, option: str) -> int:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a symbolic link: ENOTDIR on Linux, ELOOP elsewhere.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise UnsafeDirectory(f"directory {directory} is a symbolic link, which fingerd "
                                  f"does not follow; name the real directory in {option}") \
                from None
        raise
    problem = unsafe_ownership(f"directory {directory}", directory, os.fstat(fd))
    if problem:
        os.close(fd)
        raise UnsafeDirectory(problem)
    return fd


def socket_directory_problem(path: str, option: str) -> str | None:
    """What ``bind_unix`` would refuse in ``path``'s directory, found without making or
    binding anything (``fingerd -t``): an unsafe directory, or, where it is missing, a
    file in the way of the directories a start makes."""
    directory = os.path.dirname(path)
    in_the_way = _not_a_directory(directory)
    if in_the_way is not None:
        return f"{in_the_way} is not a directory"
    if not os.path.lexists(directory):
        return None
    try:
        os.close(_safe_directory(directory, option))
    except UnsafeDirectory as exc:
        return str(exc)
    except OSError as exc:
        return f"directory {directory}: {exc.strerror or exc}"
    return None


def _remove_stale(path: str, option: str) -> None:
    """Remove a socket nobody listens on at ``path``, if its directory is still safe;
    refuse to touch anything else."""
    directory, name = os.path.split(path)
    dir_fd = _open_directory(directory, path, option)
    try:
        _remove_stale_in(dir_fd, name, path, option)
    finally:
        os.close(dir_fd)


def _remove_stale_in(dir_fd: int, name: str, path: str, option: str) -> None:
    """Remove the socket ``name`` of the directory ``dir_fd`` (at ``path``) when nobody
    listens on it; refuse to touch anything else."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketPathRefused(f"cannot listen on {path} ({option}): a file that is not a "
                                f"socket is in the way")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # Non-blocking: a live server with a full backlog must not hang the start.
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            return
        except BlockingIOError:
            pass
    raise BindError(f"cannot listen on {path} ({option}): another process serves it")


def unix_socket_paths(config: Config) -> list[str]:
    """The Unix sockets the parent creates, to be removed at stop."""
    return [config.setter_socket] if config.setter_socket else []


def bind_all(config: Config) -> dict[str, list[socket.socket]]:
    """``{service: [socket, ...]}`` for every configured address; all or nothing."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for service, option, addresses in _plan(config):
            bound[service] = []
            for address in addresses:
                bound[service].append(bind(address, config.backlog, option))
        for path in unix_socket_paths(config):
            bound["setter"].append(bind_unix(path, config.backlog, "[setter] socket"))
    except BindError:
        close_all(bound)
        remove_unix_sockets(config)
        raise
    return bound


def rebind_all(config: Config, current: dict[str, list[socket.socket]],
               ) -> tuple[dict[str, list[socket.socket]], list[socket.socket]]:
    """For a configuration read again: ``(sockets, unused)``.

    ``sockets`` is ``bind_all``'s answer for ``config``, made of the sockets in
    ``current`` wherever an address stays (so nothing queued on them is lost,
    and a service may move to another service's address) and of new ones for
    new addresses; ``unused`` are those of ``current`` no longer configured,
    for the caller to close once no worker serves them. All or nothing: on
    BindError the new sockets are closed and ``current`` is untouched.
    """
    by_address = {_address_of(sock): sock for socks in current.values() for sock in socks}
    bound: dict[str, list[socket.socket]] = {}
    fresh: list[socket.socket] = []

    def take(key: tuple[object, ...], make: Callable[[], socket.socket]) -> socket.socket:
        sock = by_address.pop(key, None)
        if sock is None:
            sock = make()
            fresh.append(sock)
        else:
            sock.listen(config.backlog)
        return sock

    try:
        for service, option, addresses in _plan(config):
            bound[service] = [
                take(("tcp", address.host, address.port),
                     partial(bind, address, config.backlog, option))
                for address in addresses]
        for path in unix_socket_paths(config):
            bound["setter"].append(take(("unix", path), partial(
                bind_unix, path, config.backlog, "[setter] socket")))
    except BindError:
        for sock in fresh:
            sock.close()
        raise
    return bound, list(by_address.values())


def _address_of(sock: socket.socket) -> tuple[object, ...]:
    name = sock.getsockname()
    return ("unix", name) if sock.family == socket.AF_UNIX else ("tcp", name[0], name[1])


def remove_unix_sockets(config: Config) -> None:
    """Once this process's sockets are closed, remove its Unix sockets from the file
    system: any still there that nobody serves. One another daemon serves is left alone."""
    for path in unix_socket_paths(config):
        try:
            _remove_stale(path, "[setter] socket")
        except (BindError, OSError):
            pass


def _missing_directories(paths: list[str]) -> list[str]:
    """The directories of the Unix sockets at ``paths`` that do not exist yet, deepest
    first: those binding will create. Asked before binding, so a directory that existed
    before is never among them."""
    missing: list[str] = []
    for path in paths:
        directory = os.path.dirname(path)
        while directory and directory not in missing and not os.path.lexists(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
    return missing


class MadeDirectories:
    """The directories this process made for its Unix sockets, at start or at a reload,
    each removed once it is empty: after the socket it was made for is removed, at stop
    or once a reload drops it. One that another program put a file in is kept (and tried
    again the next time). Only the parent, single-threaded, holds one."""

    def __init__(self) -> None:
        self._made: set[str] = set()

    def before_binding(self, paths: list[str]) -> None:
        """Note the directories binding the Unix sockets at ``paths`` will make."""
        self._made.update(_missing_directories(paths))

    def remove_empty(self) -> None:
        """Remove those now empty, each before its parent (a path sorts after its
        parent's); forget those removed, or gone."""
        for directory in sorted(self._made, reverse=True):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            self._made.discard(directory)


def close_sockets(socks: Iterable[socket.socket]) -> None:
    """Close ``socks``, and remove from the file system the Unix ones nobody serves then."""
    for sock in socks:
        path = sock.getsockname() if sock.family == socket.AF_UNIX else None
        sock.close()
        if path:
            try:
                _remove_stale(path, "[setter] socket")
            except (BindError, OSError):
                pass


def close_all(bound: dict[str, list[socket.socket]]) -> None:
    for socks in bound.values():
        for sock in socks:
            sock.close()
