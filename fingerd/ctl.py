"""The ``fingerd-ctl`` command (see fingerd-ctl(8)), with LSB exit statuses."""

import argparse
import os
import pwd
import signal
import sys
import time

from fingerd.config import (DEFAULT_PATH, DEFAULT_PIDFILE, MAX_CONFIG_BYTES, ConfigError,
                            load_config, pidfile_setting)
from fingerd.finger import client
from fingerd.process import pidfile

#: Seconds ``stop`` waits for the daemon to exit.
STOP_TIMEOUT = 20.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DEAD = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NO_PERMISSION = 4


def say(message, stream=sys.stdout):
    print(f"fingerd-ctl: {message}", file=stream)


def cmd_status(path, args):
    state, pid = pidfile.probe(path)
    if state == pidfile.RUNNING:
        print(f"fingerd is running (pid {pid})")
        return EXIT_OK
    if state == pidfile.DEAD:
        print(f"fingerd is not running, but its pidfile {path} remains (pid {pid})")
        return EXIT_DEAD
    print("fingerd is not running")
    return EXIT_NOT_RUNNING


def cmd_reload(path, args):
    state, pid = pidfile.probe(path)
    if state != pidfile.RUNNING or pid is None:
        say("fingerd is not running", sys.stderr)
        return EXIT_NOT_RUNNING
    os.kill(pid, signal.SIGHUP)
    print(f"fingerd (pid {pid}) is reading its users file again")
    return EXIT_OK


def cmd_stop(path, args):
    state, pid = pidfile.probe(path)
    if state != pidfile.RUNNING or pid is None:
        print("fingerd is not running")
        return EXIT_OK
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pidfile.probe(path)[0] == pidfile.RUNNING or _alive(pid):
        if time.monotonic() > deadline:
            say(f"fingerd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s", sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    print(f"fingerd (pid {pid}) stopped")
    return EXIT_OK


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Seconds a set or get may take.
CLIENT_TIMEOUT = 15.0


def _ask(address, data, service):
    """The answer of the service at ``address`` to ``data``, or None (reason printed)."""
    try:
        return client.exchange(client.local_host(address), address.port, data,
                               CLIENT_TIMEOUT, client.MAX_ANSWER_BYTES)[0]
    except client.NoAnswer as exc:
        say(f"cannot reach the {service} at {address}: {exc}", sys.stderr)
        return None


def cmd_set(config, args):
    """Through the setter's Unix socket when there is one, else its first TCP address.
    ``set STATUS`` alone sets the status of the account running this command."""
    if args.status is None:
        args.user, args.status = _own_login(), args.user
        if args.user is None:
            say("this account has no login name to set the status of", sys.stderr)
            return EXIT_FAILED
    request = f"{args.user}\r\n{args.status}\r\n".encode("utf-8")
    if config.setter_socket:
        try:
            reply = client.exchange_unix(config.setter_socket, request, CLIENT_TIMEOUT,
                                         client.MAX_ANSWER_BYTES)[0]
        except client.NoAnswer as exc:
            say(f"cannot reach the setter at {config.setter_socket}: {exc}", sys.stderr)
            reply = None
    else:
        reply = _ask(config.setter_listen[0], request, "setter")
    if reply is None:
        return EXIT_FAILED
    text = reply.decode("utf-8", "replace").strip()
    if text == "OK":
        return EXIT_OK
    say(f"refused: {text.removeprefix('ERROR ') or 'no answer'}", sys.stderr)
    return EXIT_FAILED


def _own_login():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def cmd_get(config, args):
    reply = _ask(config.finger_listen[0], f"{args.user}\r\n".encode("utf-8"), "finger service")
    if reply is None:
        return EXIT_FAILED
    sys.stdout.write(reply.decode("utf-8", "replace").replace("\r\n", "\n"))
    return EXIT_OK


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="fingerd-ctl", description="control fingerd")
    parser.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE",
                        help=f"configuration file (default {DEFAULT_PATH})")
    parser.add_argument("--pidfile", metavar="FILE",
                        help="for status, stop and reload when the configuration does not "
                             "load and has no [fingerd] pidfile line: the pidfile to use "
                             f"(default {DEFAULT_PIDFILE})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("reload", help="read the users file again (SIGHUP)")
    commands.add_parser("stop", help="stop the daemon and wait until it has exited")
    commands.add_parser("status", help="say whether the daemon runs")
    setter = commands.add_parser(
        "set", help="set USER's status through the setter service (without USER: your own)",
        usage="fingerd-ctl set [USER] STATUS")
    setter.add_argument("user", metavar="[USER]")
    setter.add_argument("status", nargs="?", metavar="STATUS")
    getter = commands.add_parser("get", help="print what the finger service answers for USER")
    getter.add_argument("user")
    args = parser.parse_args(argv)
    for value in (getattr(args, "user", ""), getattr(args, "status", "")):
        if value and any(ch in value for ch in "\r\n"):
            parser.error("USER and STATUS must be single lines")
    return args


#: Commands that need only the pidfile, so that they work with a broken configuration.
PIDFILE_COMMANDS = {"status": cmd_status, "reload": cmd_reload, "stop": cmd_stop}
COMMANDS = {"set": cmd_set, "get": cmd_get}


def fallback_pidfile(args):
    """The pidfile for a configuration that does not load, and where that choice came from:
    the file's own pidfile line, else ``--pidfile``, else the default."""
    try:
        with open(args.config, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES).decode("utf-8", "replace")
    except OSError:
        text = ""
    found = pidfile_setting(text, args.config)
    if found:
        return found, "its pidfile line"
    if args.pidfile:
        return args.pidfile, "--pidfile"
    return DEFAULT_PIDFILE, "the default"


def main(argv=None):
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
        return _run(PIDFILE_COMMANDS[args.command], config.pidfile, args)
    return _run(COMMANDS[args.command], config, args)


def _run(command, target, args):
    try:
        return command(target, args)
    except PermissionError as exc:
        say(f"{exc.strerror}: run as root", sys.stderr)
        return EXIT_NO_PERMISSION


if __name__ == "__main__":
    raise SystemExit(main())
