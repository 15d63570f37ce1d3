"""The ``fingerd-ctl`` command (see fingerd-ctl(8)), with LSB exit statuses."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

from fingerd.config import (
    DEFAULT_PATH,
    DEFAULT_PIDFILE,
    Config,
    ConfigError,
    configured_path,
    load_config,
)
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


class OutputFailed(Exception):
    """Standard output took not what a command printed (a full disk, a closed pipe)."""


def out(text: str, end: str = "\n") -> None:
    """``text`` and ``end`` on standard output, at once; OutputFailed if not taken."""
    try:
        print(text, end=end, flush=True)
    except OSError as exc:
        raise OutputFailed(exc.strerror) from None


def say(message: str, stream: TextIO = sys.stdout) -> None:
    print(f"fingerd-ctl: {message}", file=stream)


def _complain(message: str) -> None:
    say(message, sys.stderr)


def cmd_status(path: str, args: argparse.Namespace) -> int:
    state, pid = pidfile.probe(path)
    if state == pidfile.RUNNING:
        out(f"fingerd is running ({pid_said(path, pid)})")
        return EXIT_OK
    if _elsewhere(path, args, out):
        return EXIT_OK
    if state == pidfile.DEAD:
        out(f"fingerd is not running, but its pidfile {path} remains ({named_pid(pid)})")
        return EXIT_DEAD
    out("fingerd is not running")
    return EXIT_NOT_RUNNING


def _running_pid(path: str, args: argparse.Namespace) -> tuple[int | None, int]:
    """The pid of the daemon to signal, or None and the exit status: EXIT_NOT_RUNNING,
    for the command to say; or, said, a daemon running elsewhere or one of unknown pid."""
    state, pid = pidfile.probe(path)
    if state != pidfile.RUNNING:
        return None, EXIT_FAILED if _elsewhere(path, args) else EXIT_NOT_RUNNING
    if pid is None:
        return None, _pid_unknown(path)
    return pid, EXIT_OK


def cmd_reload(path: str, args: argparse.Namespace) -> int:
    pid, status = _running_pid(path, args)
    if status == EXIT_NOT_RUNNING:
        say("fingerd is not running", sys.stderr)
    if pid is None:
        return status
    sent = time.monotonic()
    if not _sent(pid, signal.SIGHUP):
        say(f"fingerd (pid {pid}) exited before it was asked to reload", sys.stderr)
        return EXIT_NOT_RUNNING
    if args.no_wait:
        out(f"fingerd (pid {pid}) was asked to read its configuration and users file again")
        return EXIT_OK
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        status = reload_status.read(path)
        if status is not None and status["pid"] == pid and status["asked"] >= sent:
            if status["applied"]:
                out(f"fingerd (pid {pid}): {reload_status.shown(status['message'])}")
                return EXIT_OK
            say(f"reload refused: {reload_status.shown(status['message'])}", sys.stderr)
            unshown = getattr(args, "unshown", None)
            if unshown is not None and str(unshown) in status["message"]:
                args.unshown = None
            return EXIT_FAILED
        if not _alive(pid):
            say(f"fingerd (pid {pid}) exited during the reload", sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    say(f"fingerd (pid {pid}) gave no outcome of the reload within {RELOAD_TIMEOUT:.0f} s "
        f"({reload_status.path_for(path)}); see its log", sys.stderr)
    return EXIT_FAILED


def cmd_stop(path: str, args: argparse.Namespace) -> int:
    pid, status = _running_pid(path, args)
    if status == EXIT_NOT_RUNNING:
        removed = pidfile.remove_stale(path)
        out(f"fingerd is not running{f'; removed its stale pidfile {path}' if removed else ''}")
        return EXIT_OK
    if pid is None:
        return status
    _sent(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pidfile.probe(path)[0] == pidfile.RUNNING or _alive(pid):
        if time.monotonic() > deadline:
            say(f"fingerd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s", sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    out(f"fingerd (pid {pid}) stopped")
    return EXIT_OK


def cmd_reopen(path: str, args: argparse.Namespace) -> int:
    """SIGUSR1: the daemon reopens its log file, as logrotate's postrotate asks once it
    has moved the file. Not running is said on standard output: nothing to reopen."""
    state, pid = pidfile.probe(path)
    if state == pidfile.RUNNING and pid is None:
        return _pid_unknown(path)
    try:
        if state == pidfile.RUNNING and pid is not None and _sent(pid, signal.SIGUSR1):
            out(f"fingerd (pid {pid}) was asked to reopen its log file")
            return EXIT_OK
    except OSError as exc:
        hint = ": run as root" if isinstance(exc, PermissionError) else ""
        say(f"cannot signal fingerd (pid {pid}): {exc.strerror}{hint}", sys.stderr)
        return EXIT_FAILED
    if _elsewhere(path, args):
        return EXIT_FAILED
    out("fingerd is not running")
    return EXIT_NOT_RUNNING


def pid_said(path: str, pid: int | None) -> str:
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
    say(f"fingerd is running ({pid_said(path, None)})", sys.stderr)
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


def named_pid(pid: int | None) -> str:
    """What a pidfile left behind names: its pid, or none (garbage, or no pid at all)."""
    return f"pid {pid}" if pid is not None else "naming no pid"


def cmd_client(config: Config, args: argparse.Namespace) -> int:
    """set and get, by ctl_client: imported for them only, with the finger client."""
    commands = importlib.import_module("fingerd.ctl_client")
    done: int = (commands.cmd_set if args.command == "set" else commands.cmd_get)(config, args)
    return done


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
    try:
        config = commands.with_password(config)
    except ConfigError as exc:
        return _not_loaded(exc)
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
COMMANDS = {"set": cmd_client, "get": cmd_client, "import": cmd_redis, "export": cmd_redis}


def fallback_pidfile(args: argparse.Namespace) -> tuple[str, str]:
    """The pidfile for a configuration that does not load, and where that choice came from:
    the file's own pidfile line, else ``--pidfile``, else the default."""
    found = configured_path(args.config, "pidfile")
    if found:
        return found, "its pidfile line"
    if args.pidfile:
        return args.pidfile, "--pidfile"
    return DEFAULT_PIDFILE, "the default"


def _guessed_unread(config: str, source: str, path: str) -> bool:
    """Whether the default pidfile ``path``, taken because this account may not read the
    configuration, which may name another, names no daemon running: then nothing is
    known, since a daemon that runs is never to be called stopped or not running."""
    if source != "the default" or not os.path.exists(config) or os.access(config, os.R_OK):
        return False
    try:
        return pidfile.probe(path)[0] != pidfile.RUNNING
    except OSError:
        return True


def _not_loaded(exc: ConfigError) -> int:
    """Say why the configuration (or a file it names) does not load; the exit status for
    it: 4 where this account may not read it, 1 otherwise."""
    print(exc, file=sys.stderr)
    return EXIT_NO_PERMISSION if "Permission denied" in str(exc) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if args.command not in PIDFILE_COMMANDS:
            return _not_loaded(exc)
        path, source = fallback_pidfile(args)
        guessed = _guessed_unread(args.config, source, path)
        # Said once: by the outcome of a reload waited for, when the daemon finds it too.
        args.unshown = exc if (args.command == "reload" and not args.no_wait
                               and not guessed) else None
        if args.unshown is None:
            _not_loaded(exc)
        say(f"the configuration does not load; using the pidfile {path} ({source})",
            sys.stderr)
        if guessed:
            say(f"no fingerd runs by {path}, but this account may not read {args.config}, "
                f"which may name another pidfile: whether fingerd runs cannot be told; run "
                f"as root, or give --pidfile", sys.stderr)
            return EXIT_NO_PERMISSION
        status = _run(PIDFILE_COMMANDS[args.command], path, args)
        if args.unshown is not None:
            _not_loaded(args.unshown)
        return status
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
    except OutputFailed as exc:
        # What is left unwritten goes nowhere at exit, rather than fail again there.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        say(f"cannot write standard output: {exc}", sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    # As the module fingerd.ctl, which ctl_client and ctl_redis import: one OutputFailed.
    from fingerd.ctl import main as module_main
    raise SystemExit(module_main())
