"""Binding the listening sockets, before anything else runs.

Only this module binds. The servers adopt what it returns, so that a
privileged parent can bind and an unprivileged process serve.
"""

import errno
import os
import socket
import stat

UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


class BindError(OSError):
    """A listening socket could not be made; the message is one line for the operator."""


def bind(address, backlog, option):
    """A listening TCP socket on ``address``; ``option`` names the setting, for errors."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(_explain(exc, address, option)) from None
    return sock


def _explain(exc, address, option):
    if exc.errno == errno.EACCES and address.port < 1024:
        return _needs_root(address, option, 1024)
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address} ({option}): address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address} ({option}): no such address on this machine"
    return f"cannot listen on {address} ({option}): {exc.strerror}"


def _needs_root(address, option, first_free):
    return (f"cannot listen on {address} ({option}): ports below {first_free} need root; "
            f"start as root or set {option} to a port of {first_free} or more")


def _plan(config):
    return (("finger", "[finger] listen", config.finger_listen),
            ("setter", "[setter] listen", config.setter_listen),
            ("metrics", "[metrics] listen", config.metrics_listen),
            ("web", "[web] listen", config.web_listen))


def privileged_port_problem(config):
    """Why this process may not bind a configured port, or None; checked before anything else."""
    if os.geteuid() == 0:
        return None
    try:
        with open(UNPRIVILEGED_PORT_START) as f:
            first_free = int(f.read())
    except (OSError, ValueError):
        first_free = 1024
    for _, option, addresses in _plan(config):
        for address in addresses:
            if address.port < first_free:
                return _needs_root(address, option, first_free)
    return None


#: Mode of the setter's Unix socket: any local user may connect; the setter's
#: policy, not the file's mode, decides what each may do.
UNIX_SOCKET_MODE = 0o666


def bind_unix(path, backlog, option):
    """A listening Unix stream socket at ``path``, replacing a stale one left by a dead
    daemon; its directory is created if missing."""
    try:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        _remove_stale(path, option)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except BindError:
        raise
    except OSError as exc:
        raise BindError(f"cannot listen on {path} ({option}): {exc.strerror}") from None
    try:
        sock.bind(path)
        os.chmod(path, UNIX_SOCKET_MODE)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {path} ({option}): {exc.strerror}") from None
    return sock


def _remove_stale(path, option):
    """Remove a socket nobody listens on; refuse to touch anything else at ``path``."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot listen on {path} ({option}): a file that is not a socket "
                        f"is in the way")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # Non-blocking: a live server with a full backlog must not hang the start.
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
            return
        except BlockingIOError:
            pass
    raise BindError(f"cannot listen on {path} ({option}): another process serves it")


def unix_socket_paths(config):
    """The Unix sockets the parent creates, to be removed at stop."""
    return [config.setter_socket] if config.setter_socket else []


def bind_all(config):
    """``{service: [socket, ...]}`` for every configured address; all or nothing."""
    bound = {}
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


def rebind_all(config, current):
    """For a configuration read again: ``(sockets, unused)``.

    ``sockets`` is ``bind_all``'s answer for ``config``, made of the sockets in
    ``current`` wherever an address stays (so nothing queued on them is lost,
    and a service may move to another service's address) and of new ones for
    new addresses; ``unused`` are those of ``current`` no longer configured,
    for the caller to close once no worker serves them. All or nothing: on
    BindError the new sockets are closed and ``current`` is untouched.
    """
    by_address = {_address_of(sock): sock for socks in current.values() for sock in socks}
    bound = {}
    fresh = []

    def take(key, make):
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
                     lambda address=address, option=option: bind(address, config.backlog,
                                                                  option))
                for address in addresses]
        for path in unix_socket_paths(config):
            bound["setter"].append(take(("unix", path), lambda path=path: bind_unix(
                path, config.backlog, "[setter] socket")))
    except BindError:
        for sock in fresh:
            sock.close()
        raise
    return bound, list(by_address.values())


def _address_of(sock):
    name = sock.getsockname()
    return ("unix", name) if sock.family == socket.AF_UNIX else ("tcp", name[0], name[1])


def remove_unix_sockets(config):
    """Once this process's sockets are closed, remove its Unix sockets from the file
    system: any still there that nobody serves. One another daemon serves is left alone."""
    for path in unix_socket_paths(config):
        try:
            _remove_stale(path, "[setter] socket")
        except (BindError, OSError):
            pass


def close_sockets(socks):
    """Close ``socks``, and remove from the file system the Unix ones nobody serves then."""
    for sock in socks:
        path = sock.getsockname() if sock.family == socket.AF_UNIX else None
        sock.close()
        if path:
            try:
                _remove_stale(path, "[setter] socket")
            except (BindError, OSError):
                pass


def close_all(bound):
    for socks in bound.values():
        for sock in socks:
            sock.close()
