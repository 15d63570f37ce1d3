"""The ``fingerd`` command line (see fingerd(8))."""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import signal
import socket
import stat
import sys
from types import SimpleNamespace
from typing import IO

from fingerd import __version__, loghandlers, logsetup
from fingerd.config import (
    DEFAULT_PATH,
    Config,
    ConfigError,
    config_text,
    configured_log_file,
    load_config,
)
from fingerd.finger.sources import NOBODY_UID
from fingerd.process.exits_and_signals import EXIT_CONFIG, HANDLED_SIGNALS, PARENT_IGNORED
from fingerd.process.parent import activation, daemonize, notify, reloading
from fingerd.process.parent.accounts import (
    Account,
    AccountError,
    resolve_account,
    unreadable_by,
)
from fingerd.process.parent.address_check import held_addresses
from fingerd.process.parent.forking import ForkedWorkers
from fingerd.process.parent.listeners import (
    BindError,
    MadeDirectories,
    SocketPathRefused,
    bind_all,
    close_all,
    privileged_port_problem,
    remove_unix_sockets,
    unix_socket_paths,
)
from fingerd.process.parent.supervisor import Supervisor
from fingerd.process.pidfile import AlreadyRunning, Pidfile, lock_path
from fingerd.process.reload_status import ReloadStatus
from fingerd.users import fileio, redis_password
from fingerd.users.backends import redis_problem
from fingerd.users.redis_schema import redacted, users_key
from fingerd.users.usersfile import UsersFileError, parse_users

log = logging.getLogger("fingerd")

#: How to create the account the example configuration names.
CREATE_ACCOUNT = ("useradd --system --user-group --no-create-home --home-dir /nonexistent "
                  "--shell /usr/sbin/nologin fingerd")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="fingerd", description="finger daemon (RFC 1288)")
    parser.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE",
                        help=f"configuration file (default {DEFAULT_PATH})")
    parser.add_argument("-n", "--foreground", action="store_true",
                        help="do not detach; log to standard error unless log_file is set")
    parser.add_argument("-t", "--check-config", action="store_true",
                        help="check the configuration and the users file, then exit")
    parser.add_argument("-T", "--dump-config", action="store_true",
                        help="check as -t, then print the effective configuration")
    parser.add_argument("--version", action="version", version=f"fingerd {__version__}")
    return parser.parse_args(argv)


def fail(message: str, status: int = 1) -> int:
    """Say why the start failed on standard error, and once in the log (see
    ``logsetup.configure_startup``); ``status``, the exit status."""
    print(f"fingerd: {message}", file=sys.stderr)
    log.error("startup failed: %s", message)
    return status


def fail_with(error: Exception, status: int) -> int:
    """As ``fail``, for errors whose lines name their file and line themselves."""
    print(error, file=sys.stderr)
    log.error("startup failed: %s", "; ".join(str(error).splitlines()))
    return status


def main(argv=None):
    args = parse_args(argv)
    # Absolute from here on: a detached daemon works in /, and each reload reads the
    # file again by this path. Where the working directory is gone, it stays as typed,
    # for the read to fail on.
    try:
        args.config = os.path.abspath(args.config)
    except FileNotFoundError:
        pass
    starting = not (args.check_config or args.dump_config)
    # What no retry mends fails a start with EX_CONFIG, which systemd's unit does not
    # restart (RestartPreventExitStatus); -t and -T say 1, as ever.
    misconfigured = EXIT_CONFIG if starting else 1
    logsetup.configure_startup(configured_log_file(args.config) if starting else "",
                               starting and not args.foreground)
    try:
        config = load_config(args.config)
        account = resolve_account(config)
    except (ConfigError, AccountError) as exc:
        return fail_with(exc, misconfigured)
    if config.store_backend == "redis":
        problem = redis_problem()
        if problem:
            return fail(f"{config.where('store', 'backend')}: {problem}", misconfigured)
        try:
            connected = redis_password.with_password(config)
        except ConfigError as exc:
            return fail_with(exc, misconfigured)
        warning = redis_password.exposed(config)
        if args.check_config or args.dump_config:
            if warning:
                print(f"fingerd: {warning}", file=sys.stderr)
            return valid(config, args.dump_config, f"{config.path}: configuration valid; "
                         f"statuses in Redis ({describe_redis(config)}), users_file is not read")
        if warning:
            log.warning("%s", warning)
        return serve(connected, account, args.foreground)
    try:
        fileio.check_users_file(config.users_file)
        count = count_users(config.users_file)
    except UsersFileError as exc:
        return fail_with(exc, misconfigured)
    except fileio.UnsafeUsersFile as exc:
        return fail(f"users file {config.users_file}: {exc.strerror}", misconfigured)
    except OSError as exc:
        return fail(f"{config.users_file}: cannot read users file: {exc.strerror or exc}",
                    misconfigured if lasting(exc) else 1)
    denied = unreadable_by(account, config.users_file) if os.geteuid() == 0 else None
    if denied is not None:
        return fail(f"{config.users_file}: the worker, run as {account.name}, cannot read the "
                    f"users file: {denied.strerror}", misconfigured)
    if args.check_config or args.dump_config:
        if count is None:
            print(f"fingerd: {config.users_file}: no users file; starting with no users",
                  file=sys.stderr)
        return valid(config, args.dump_config,
                     f"{config.path}: configuration valid; {config.users_file}: {count or 0} users")
    return serve(config, account, args.foreground)


#: Why the users file cannot be read that no retry mends until the operator acts, beside
#: what is no regular file or too large: a start fails on these with EX_CONFIG. Others
#: (EIO, ENOMEM, EMFILE...) may pass, and exit 1.
LASTING_READ_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                                 errno.ELOOP, errno.ENAMETOOLONG})


def lasting(exc: OSError) -> bool:
    """Whether ``exc``, met checking or reading the users file, lasts until the operator
    acts (a directory or FIFO at its path, a file in the way of its directory...)."""
    return (isinstance(exc, (fileio.NotRegularFile, fileio.FileTooLarge))
            or exc.errno in LASTING_READ_ERRORS)


def remove_leftovers(users_file: str) -> None:
    """Remove, and say, the temporary files that writes of the users file cut short
    left beside it, before any worker can ask for a write."""
    try:
        removed = fileio.remove_temporaries(users_file)
    except OSError as exc:
        log.warning("%s: cannot look for temporary files left by interrupted writes: %s",
                    os.path.dirname(os.path.abspath(users_file)), exc.strerror or exc)
        return
    for path in removed:
        log.warning("removed %s, left by a write of the users file that was cut short", path)


def valid(config: Config, dump: bool, verdict: str) -> int:
    """-t's verdict once the pidfile, the log file and the addresses are checked too, exit
    0; with -T on standard error, standard output holding only the effective
    configuration, itself a configuration file. Exit 1 with a pidfile or log file that
    cannot be written and the addresses another program holds, which a start would fail
    on (so that a restart refuses before it stops anything)."""
    problems = [f"{config.where('fingerd', key)}: [fingerd] {key}: {path}: {what}: {problem}"
                for key, path, what, check in (
                    ("pidfile", config.pidfile, "cannot take the pidfile", cannot_replace),
                    ("log_file", config.log_file, "cannot open log file", cannot_write))
                if path and (problem := check(path))]
    problems += held_addresses(config)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(verdict, file=sys.stderr if dump else sys.stdout)
    if dump:
        print(config_text(config), end="")
    return 0


def cannot_write(path: str) -> str | None:
    """Why the daemon could not open the log file ``path``, or None; nothing is made (for
    ``fingerd -t``): a missing file is one its directory lets it create. The open never
    waits: a FIFO no process reads, which the start would wait on, is a problem.
    Permissions count only for root, which the daemon starts as: another account
    checking root's configuration cannot tell."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY |
                         os.O_CLOEXEC | loghandlers.not_followed(path)))
    except FileNotFoundError:
        return cannot_create(path)
    except PermissionError as exc:
        return exc.strerror if os.geteuid() == 0 else None
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def cannot_replace(path: str) -> str | None:
    """Why the start could not put its pidfile at ``path``, or None, without opening what
    is there: the start writes a new file beside it and renames it over whatever is at
    the path (a FIFO, a symbolic link, another account's file), but a directory."""
    # Its lock file is opened where it is, which a directory refuses too.
    for where, said in ((path, ""), (lock_path(path), f"{lock_path(path)}: ")):
        try:
            if stat.S_ISDIR(os.lstat(where).st_mode):
                return said + os.strerror(errno.EISDIR)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return said + (exc.strerror or str(exc))
    return cannot_create(path)


def cannot_create(path: str) -> str | None:
    """Why no file could be made at ``path``: its directory missing, or, checked by root,
    one root may not write."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return os.strerror(errno.ENOENT)
    if os.geteuid() == 0 and not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory}: a file cannot be created there"
    return None


def describe_redis(config):
    return f"{redacted(config.redis_url)}, hash {users_key(config.redis_prefix)}"


def count_users(path):
    """Read the users file once to fail fast; the worker reads it again to serve it.

    None for a missing file, which the worker starts with as an empty table.
    """
    try:
        data, _signature = fileio.read_bounded(path)
    except FileNotFoundError:
        return None
    return len(parse_users(data, path))


def serve(config: Config, account: Account, foreground: bool) -> int:
    """Take the sockets systemd handed over, then the pidfile; bind the rest, detach
    unless ``foreground``, supervise; the exit status."""
    try:
        handover = activation.take()
    except activation.ActivationError as exc:
        return fail(str(exc), EXIT_CONFIG)
    systemd = notify.Notifier.from_environment()
    bindable = handover.to_bind(config)
    problem = privileged_port_problem(bindable)
    if problem:
        return fail(problem, EXIT_CONFIG)
    # Until the supervisor handles them, signals wait rather than kill a starting daemon.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    for signum in PARENT_IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    pidfile = Pidfile(config.pidfile)
    try:
        pidfile.acquire()
        pidfile.write(os.getpid())
    except AlreadyRunning as exc:
        return fail(str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != config.pidfile else ""
        return fail(f"{config.pidfile}: cannot take the pidfile{where}: {exc.strerror}")
    made = MadeDirectories()
    made.before_binding(unix_socket_paths(bindable))
    try:
        sockets = handover.merged(bind_all(bindable))
    except BindError as exc:
        made.remove_empty()
        pidfile.release()
        return fail(str(exc), EXIT_CONFIG if isinstance(exc, SocketPathRefused) else 1)
    reloads = ReloadStatus(config.pidfile)
    # What is served: the configuration and its sockets, then the supervisor, whose
    # reloads replace them (``release`` sees the name's last value).
    serving: SimpleNamespace | Supervisor = SimpleNamespace(config=config, sockets=sockets)

    def release():
        """Leave nothing behind: the sockets closed, the Unix ones removed with the
        directories made for them (at start or by a reload), the pidfile."""
        close_all(serving.sockets)
        remove_unix_sockets(handover.to_bind(serving.config))
        made.remove_empty()
        reloads.remove()
        pidfile.release()

    try:
        handler = logsetup.configure(config.log_file, foreground) if config.log_file else None
    except OSError as exc:
        release()
        return fail(f"{config.log_file}: cannot open log file: {exc.strerror}")
    problem = None if foreground or handler is not None else logsetup.syslog_problem()
    if problem is not None:
        release()
        return fail(f"cannot log to syslog: {problem}; set log_file in [fingerd], or run "
                    f"in the foreground with -n")
    report = None
    if not foreground:
        keep: list[int | socket.socket | IO[str]] = [
            s for socks in sockets.values() for s in socks]
        if pidfile.fd is not None:
            keep.append(pidfile.fd)
        if isinstance(handler, logging.StreamHandler):
            keep.append(handler.stream)
        report = daemonize.detach(keep)
        pidfile.write(os.getpid())
    if handler is None:
        handler = logsetup.configure("", foreground)
    root = os.geteuid() == 0
    if not root:
        log.warning("not started as root: the worker keeps this process's user")
    elif account.uid == NOBODY_UID or config.user == "nobody":
        log.warning("%s: [fingerd] user = %s: every other service running as it can stop or "
                    "kill the worker and read what it reads; give fingerd an account of its "
                    "own: %s, then user = fingerd", config.where("fingerd", "user"),
                    config.user, CREATE_ACCOUNT)

    def listening(role, configured):
        return ", ".join([*handover.described(role), *map(str, configured)])

    log.info("fingerd %s starting: finger on %s, setter on %s%s%s", __version__,
             listening("finger", bindable.finger_listen),
             listening("setter", [*bindable.setter_listen, *unix_socket_paths(bindable)]),
             ", metrics on " + listening("metrics", bindable.metrics_listen)
             if sockets["metrics"] else "",
             ", web on " + listening("web", bindable.web_listen) if sockets["web"] else "")

    if config.store_backend != "redis":
        remove_leftovers(config.users_file)

    def on_ready(reason):
        # A failed start leaves nothing behind once the starting process hears of it:
        # it exits on the word, and whoever started it may look at once.
        if reason is not None:
            release()
        else:
            systemd.send(notify.READY)
        if report is not None:
            report(reason)

    def on_reload(applied, message, asked):
        workers.config_reloads.record("success" if applied else "failure")
        systemd.send(notify.READY)
        try:
            reloads.record(applied, message, asked)
        except OSError as exc:
            log.error("%s: cannot write the reload's outcome: %s", reloads.path, exc.strerror)

    workers = ForkedWorkers(config, account if root else None, sockets)
    supervisor = Supervisor(config, sockets, workers, handler, on_ready=on_ready,
                            reloader=functools.partial(reloading.prepare, handover=handover,
                                                       directories=made),
                            on_reload=on_reload, notify=systemd.send)
    serving = supervisor
    try:
        return supervisor.run()
    finally:
        release()
        log.info("stopped")
