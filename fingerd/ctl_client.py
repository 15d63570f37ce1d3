"""``fingerd-ctl set`` and ``get``: a status set through the setter service, and what
the finger service answers, each at its configured address.

``fingerd-ctl`` imports this module for these two commands only, with the finger
client they use: the commands on the pidfile need neither.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys

from fingerd.config import DEFAULT_PATH, Address, Config
from fingerd.ctl import EXIT_FAILED, EXIT_OK, named_pid, out, pid_said, say
from fingerd.finger import client
from fingerd.process import pidfile

#: Seconds a set or get may take.
CLIENT_TIMEOUT = 15.0


def _ask(config: Config, address: Address, data: bytes, service: str) -> bytes | None:
    """The answer of the service at ``address`` to ``data``, or None (reason printed)."""
    try:
        return client.exchange(client.local_host(address), address.port, data,
                               CLIENT_TIMEOUT, client.MAX_ANSWER_BYTES)[0]
    except client.NoAnswer as exc:
        unreachable(f"the {service} at its configured address {address}", exc, config.path,
                    config.pidfile)
        return None


#: The package's init script, suggested to start the default configuration.
INIT_SCRIPT = "/etc/init.d/fingerd"


def unreachable(where: str, exc: client.NoAnswer, config_path: str, pidfile_path: str) -> None:
    """Say that ``where`` could not be reached, then whether fingerd runs, from its
    pidfile, and how to start it when it does not. A daemon running elsewhere than its
    configured addresses is one started with sockets from systemd, which fingerd-ctl
    does not look for."""
    say(f"cannot reach {where}: {exc}", sys.stderr)
    try:
        state, pid = pidfile.probe(pidfile_path)
    except OSError as problem:
        say(f"cannot tell whether fingerd runs ({pidfile_path}): {problem.strerror}",
            sys.stderr)
        return
    if state == pidfile.RUNNING:
        say(f"fingerd is running ({pid_said(pidfile_path, pid)}) but not answering there: "
            "fingerd-ctl uses the configured addresses, never sockets systemd handed over "
            "(socket activation), and they may have changed since the daemon's last start "
            "or reload; else see its log", sys.stderr)
        return
    config_path = os.path.abspath(config_path)
    start = (f"{INIT_SCRIPT} start" if config_path == DEFAULT_PATH and
             os.path.exists(INIT_SCRIPT) else f"fingerd -c {config_path}")
    left = f" (its pidfile {pidfile_path} remains, {named_pid(pid)})" if state == pidfile.DEAD \
        else ""
    say(f"fingerd is not running{left}; start it with: {start}", sys.stderr)


def cmd_set(config: Config, args: argparse.Namespace) -> int:
    """Through the setter's Unix socket when there is one, else its first TCP address.
    ``set STATUS`` alone sets the status of the account running this command."""
    if args.status is None:
        args.user, args.status = _own_login(), args.user
        if args.user is None:
            say("this account has no login name to set the status of", sys.stderr)
            return EXIT_FAILED
    # An argument that is not UTF-8 goes as its bytes, for the setter to refuse.
    request = f"{args.user}\r\n{args.status}\r\n".encode("utf-8", "surrogateescape")
    if config.setter_socket:
        try:
            reply = client.exchange_unix(config.setter_socket, request, CLIENT_TIMEOUT,
                                         client.MAX_ANSWER_BYTES)[0]
        except client.NoAnswer as exc:
            unreachable(f"the setter at its configured socket {config.setter_socket}", exc,
                        config.path, config.pidfile)
            reply = None
    else:
        reply = _ask(config, config.setter_listen[0], request, "setter")
    if reply is None:
        return EXIT_FAILED
    text = reply.decode("utf-8", "replace").strip()
    if text == "OK":
        out(f'{args.user}: status set to "{args.status}"')
        return EXIT_OK
    if not text:
        say(f"no answer from the setter: whether the status of {args.user} was set is "
            f"unknown; see with: fingerd-ctl get {args.user}", sys.stderr)
    else:
        say(f"refused: {text.removeprefix('ERROR ')}", sys.stderr)
    return EXIT_FAILED


def _own_login() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def cmd_get(config: Config, args: argparse.Namespace) -> int:
    # Behind a proxy the service reads a PROXY header first: UNKNOWN keeps our own address.
    header = b"PROXY UNKNOWN\r\n" if config.finger_proxy_protocol else b""
    address = config.finger_listen[0]
    reply = _ask(config, address, header + f"{args.user}\r\n".encode("utf-8", "surrogateescape"),
                 "finger service")
    if not reply:
        if reply is not None:
            say(f"the finger service at {address} answered nothing; see its log", sys.stderr)
        return EXIT_FAILED
    out(reply.decode("utf-8", "replace").replace("\r\n", "\n"), end="")
    return EXIT_OK
