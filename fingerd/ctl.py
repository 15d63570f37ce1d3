"""The ``fingerd-ctl`` command (see fingerd-ctl(8)), with LSB exit statuses."""

from __future__ import annotations

import argparse
import importlib
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

from fingerd.config import (
    DEFAULT_PATH,
    DEFAULT_PIDFILE,
    Address,
    Config,
    ConfigError,
    configured_path,
    load_config,
)
from fingerd.finger import client
from fingerd.limits import STARTUP_TIMEOUT
from fingerd.process import pidfile, reload_status

#: Seconds ``stop`` waits for the daemon to exit.
STOP_TIMEOUT = 20.0
#: Seconds ``reload`` waits for its outcome: STARTUP_TIMEOUT, then the handover (8 s at most).
RELOAD_TIMEOUT = STARTUP_TIMEOUT + 10.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DEAD = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NO_PERMISSION = 4


def say(message: str, stream: TextIO = sys.stdout) -> None:
    print(f"fingerd-ctl: {message}", file=stream)


def _complain(message: str) -> None:
    say(message, sys.stderr)


def cmd_status(path: str, args: argparse.Namespace) -> int:
    state, pid = pidfile.probe(path)
    if state == pidfile.RUNNING:
        print(f"fingerd is running ({_pid_said(path, pid)})")
        return EXIT_OK
    if _elsewhere(path, args, print):
        return EXIT_OK
    if state == pidfile.DEAD:
        print(f"fingerd is not running, but its pidfile {path} remains ({_named(pid)})")
        return EXIT_DEAD
    print("fingerd is not running")
    return EXIT_NOT_RUNNING


def cmd_reload(path: str, args: argparse.Namespace) -> int:
    state, pid = pidfile.probe(path)
    if state != pidfile.RUNNING:
        if _elsewhere(path, args):
            return EXIT_FAILED
        say("fingerd is not running", sys.stderr)
        return EXIT_NOT_RUNNING
    if pid is None:
        return _pid_unknown(path)
    sent = time.monotonic()
    if not _sent(pid, signal.SIGHUP):
        say(f"fingerd (pid {pid}) exited before it was asked to reload", sys.stderr)
        return EXIT_NOT_RUNNING
    if args.no_wait:
        print(f"fingerd (pid {pid}) was asked to read its configuration and users file again")
        return EXIT_OK
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        status = reload_status.read(path)
        if status is not None and status["pid"] == pid and status["asked"] >= sent:
            if status["applied"]:
                print(f"fingerd (pid {pid}): {reload_status.shown(status['message'])}")
                return EXIT_OK
            say(f"reload refused: {reload_status.shown(status['message'])}", sys.stderr)
            return EXIT_FAILED
        if not _alive(pid):
            say(f"fingerd (pid {pid}) exited during the reload", sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    say(f"fingerd (pid {pid}) gave no outcome of the reload within {RELOAD_TIMEOUT:.0f} s "
        f"({reload_status.path_for(path)}); see its log", sys.stderr)
    return EXIT_FAILED


def cmd_stop(path: str, args: argparse.Namespace) -> int:
    state, pid = pidfile.probe(path)
    if state != pidfile.RUNNING:
        if _elsewhere(path, args):
            return EXIT_FAILED
        print("fingerd is not running")
        return EXIT_OK
    if pid is None:
        return _pid_unknown(path)
    _sent(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pidfile.probe(path)[0] == pidfile.RUNNING or _alive(pid):
        if time.monotonic() > deadline:
            say(f"fingerd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s", sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    print(f"fingerd (pid {pid}) stopped")
    return EXIT_OK


def cmd_reopen(path: str, args: argparse.Namespace) -> int:
    """SIGUSR1: the daemon reopens its log file, as logrotate's postrotate asks once it
    has moved the file. Not running is said on standard output: nothing to reopen."""
    state, pid = pidfile.probe(path)
    if state == pidfile.RUNNING and pid is None:
        return _pid_unknown(path)
    try:
        if state == pidfile.RUNNING and pid is not None and _sent(pid, signal.SIGUSR1):
            print(f"fingerd (pid {pid}) was asked to reopen its log file")
            return EXIT_OK
    except OSError as exc:
        hint = ": run as root" if isinstance(exc, PermissionError) else ""
        say(f"cannot signal fingerd (pid {pid}): {exc.strerror}{hint}", sys.stderr)
        return EXIT_FAILED
    if _elsewhere(path, args):
        return EXIT_FAILED
    print("fingerd is not running")
    return EXIT_NOT_RUNNING


def _pid_said(path: str, pid: int | None) -> str:
    """``pid N`` of the daemon holding the lock, or why it has none (pidfile.probe): said,
    never taken for a daemon that is not running."""
    if pid is not None:
        return f"pid {pid}"
    lock = pidfile.lock_path(path)
    if os.access(lock, os.R_OK):
        return f"pid unknown: neither its pidfile {path} nor its lock file {lock} names it"
    return (f"pid unknown: its pidfile {path} names none, and this account may not read "
            f"its lock file {lock}")


def _pid_unknown(path: str) -> int:
    """Nothing to signal: a failure, or a lack of permission where the lock file, which
    names the pid, may not be read."""
    say(f"fingerd is running ({_pid_said(path, None)})", sys.stderr)
    return EXIT_FAILED if os.access(pidfile.lock_path(path), os.R_OK) else EXIT_NO_PERMISSION


def _elsewhere(path: str, args: argparse.Namespace,
               tell: Callable[[str], None] = _complain) -> bool:
    """Whether a fingerd holds an address of the loaded configuration though ``path``
    names no daemon running, told: never to be called stopped or not running. Found as
    root alone, by address_check (the parent's: imported here only, for this case)."""
    if getattr(args, "loaded", None) is None or os.geteuid() != 0:
        return False
    check = importlib.import_module("fingerd.process.parent.address_check")
    found: tuple[int, str] | None = check.running_elsewhere(args.loaded)
    if found:
        pid, address = found
        tell(f"fingerd is running (pid {pid}, on {address}), though not by its pidfile {path}: "
             f"[fingerd] pidfile was changed, or the pidfile removed, since it started; "
             f"stop it with: kill {pid}")
    return bool(found)


def _sent(pid: int, signum: int) -> bool:
    """``signum`` sent to ``pid``; False if it exited since its pidfile was read."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        say(f"fingerd is running ({_pid_said(pidfile_path, pid)}) but not answering there: "
            "fingerd-ctl uses the configured addresses, never sockets systemd handed over "
            "(socket activation), and they may have changed since the daemon's last start "
            "or reload; else see its log", sys.stderr)
        return
    config_path = os.path.abspath(config_path)
    start = (f"{INIT_SCRIPT} start" if config_path == DEFAULT_PATH and
             os.path.exists(INIT_SCRIPT) else f"fingerd -c {config_path}")
    left = f" (its pidfile {pidfile_path} remains, {_named(pid)})" if state == pidfile.DEAD \
        else ""
    say(f"fingerd is not running{left}; start it with: {start}", sys.stderr)


def _named(pid: int | None) -> str:
    """What a pidfile left behind names: its pid, or none (garbage, or no pid at all)."""
    return f"pid {pid}" if pid is not None else "naming no pid"


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
        print(f'{args.user}: status set to "{args.status}"')
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
    sys.stdout.write(reply.decode("utf-8", "replace").replace("\r\n", "\n"))
    return EXIT_OK


def cmd_redis(config: Config, args: argparse.Namespace) -> int:
    """import and export, by ctl_redis: imported here only, since it imports the Redis
    client library, which the other commands neither need nor may find installed."""
    if config.store_backend != "redis":
        say(f"{args.command} needs [store] backend = redis in {config.path}", sys.stderr)
        return EXIT_FAILED
    try:
        commands = importlib.import_module("fingerd.ctl_redis")
    except ImportError as exc:
        say(f"{args.command} needs the redis client library ({exc}): "
            "pip install 'fingerd[redis]'", sys.stderr)
        return EXIT_FAILED
    done = (commands.import_file(config, args.file, _complain) if args.command == "import"
            else commands.export(config, _complain))
    return EXIT_OK if done else EXIT_FAILED


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fingerd-ctl", description="control fingerd")
    parser.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE",
                        help=f"configuration file (default {DEFAULT_PATH})")
    parser.add_argument("--pidfile", metavar="FILE",
                        help="for status, stop, reload and reopen when the configuration "
                             "does not load and has no [fingerd] pidfile line: the pidfile "
                             f"to use (default {DEFAULT_PIDFILE})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    reloader = commands.add_parser(
        "reload", help="read the configuration and the users file again (SIGHUP) and say "
                       "whether the configuration was applied")
    reloader.add_argument("--no-wait", action="store_true",
                          help="only send the signal; do not wait for the outcome")
    commands.add_parser("stop", help="stop the daemon and wait until it has exited")
    commands.add_parser("status", help="say whether the daemon runs")
    commands.add_parser("reopen", help="have the daemon reopen its log file (SIGUSR1), "
                                       "as after logrotate moved it")
    setter = commands.add_parser(
        "set", help="set USER's status through the setter service (without USER: your own)",
        usage="fingerd-ctl set [USER] STATUS")
    setter.add_argument("user", metavar="[USER]")
    setter.add_argument("status", nargs="?", metavar="STATUS")
    getter = commands.add_parser("get", help="print what the finger service answers for USER")
    getter.add_argument("user")
    importer = commands.add_parser(
        "import", help="[store] backend = redis: check FILE as a users file and, if valid, "
                       "replace the statuses in Redis with it in one transaction")
    importer.add_argument("file", metavar="FILE")
    commands.add_parser("export", help="[store] backend = redis: print the statuses in Redis "
                                       "as a users file")
    args = parser.parse_args(argv)
    for value in (getattr(args, "user", ""), getattr(args, "status", "")):
        if value and any(ch in value for ch in "\r\n"):
            parser.error("USER and STATUS must be single lines")
    return args


#: Commands that need only the pidfile, so that they work with a broken configuration.
PIDFILE_COMMANDS = {"status": cmd_status, "reload": cmd_reload, "stop": cmd_stop,
                    "reopen": cmd_reopen}
COMMANDS = {"set": cmd_set, "get": cmd_get, "import": cmd_redis, "export": cmd_redis}


def fallback_pidfile(args: argparse.Namespace) -> tuple[str, str]:
    """The pidfile for a configuration that does not load, and where that choice came from:
    the file's own pidfile line, else ``--pidfile``, else the default."""
    found = configured_path(args.config, "pidfile")
    if found:
        return found, "its pidfile line"
    if args.pidfile:
        return args.pidfile, "--pidfile"
    return DEFAULT_PIDFILE, "the default"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        if args.command not in PIDFILE_COMMANDS:
            return EXIT_NO_PERMISSION if "Permission denied" in str(exc) else EXIT_FAILED
        path, source = fallback_pidfile(args)
        say(f"the configuration does not load; using the pidfile {path} ({source})",
            sys.stderr)
        return _run(PIDFILE_COMMANDS[args.command], path, args)
    if args.command in PIDFILE_COMMANDS:
        args.loaded = config
        return _run(PIDFILE_COMMANDS[args.command], config.pidfile, args)
    return _run(COMMANDS[args.command], config, args)


_Target = TypeVar("_Target")


def _run(command: Callable[[_Target, argparse.Namespace], int], target: _Target,
         args: argparse.Namespace) -> int:
    try:
        return command(target, args)
    except PermissionError as exc:
        say(f"{exc.strerror}: run as root", sys.stderr)
        return EXIT_NO_PERMISSION


if __name__ == "__main__":
    raise SystemExit(main())
