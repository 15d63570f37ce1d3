"""The ``fingerd`` command line (CONTRACT section 2)."""

import argparse
import logging
import signal
import sys

from fingerd import __version__, logsetup
from fingerd.accounts import AccountError, resolve_account
from fingerd.config import DEFAULT_PATH, ConfigError, load_config
from fingerd.listeners import BindError, bind_all, close_all
from fingerd.metrics import Metrics
from fingerd.service import Service
from fingerd.services import OUTCOMES
from fingerd.store import UserStore
from fingerd.usersfile import UsersFileError

log = logging.getLogger("fingerd")

#: Signals the main thread waits for; blocked in every thread, so no handler runs.
SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="fingerd", description="finger daemon (RFC 1288)")
    parser.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE",
                        help=f"configuration file (default {DEFAULT_PATH})")
    parser.add_argument("-n", "--foreground", action="store_true",
                        help="do not detach; log to standard error unless log_file is set")
    parser.add_argument("-t", "--check-config", action="store_true",
                        help="check the configuration and the users file, then exit")
    parser.add_argument("--version", action="version", version=f"fingerd {__version__}")
    return parser.parse_args(argv)


def fail(message):
    print(f"fingerd: {message}", file=sys.stderr)
    return 1


def main(argv=None):
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        resolve_account(config)
    except (ConfigError, AccountError) as exc:
        print(exc, file=sys.stderr)
        return 1
    metrics = Metrics(OUTCOMES)
    store = UserStore(config.users_file, metrics)
    try:
        store.load()
    except UsersFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        return fail(f"{config.users_file}: cannot read users file: {exc.strerror or exc}")
    if args.check_config:
        print(f"{config.path}: configuration valid; {config.users_file}: "
              f"{len(store.users())} users")
        return 0
    if not args.foreground:
        return fail("detaching is not available in this version; start with -n")
    return serve(config, store, metrics)


def serve(config, store, metrics):
    """Bind, serve until TERM or INT, and return the exit status."""
    try:
        sockets = bind_all(config)
    except BindError as exc:
        return fail(str(exc))
    try:
        handler = logsetup.configure(config.log_file, foreground=True)
    except OSError as exc:
        close_all(sockets)
        return fail(f"{config.log_file}: cannot open log file: {exc.strerror}")
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS + (signal.SIGCHLD,))
    service = Service(config, sockets, store, metrics)
    service.start()
    log.info("fingerd %s serving finger on %s, setter on %s", __version__,
             ", ".join(map(str, config.finger_listen)), ", ".join(map(str, config.setter_listen)))
    while not service.failed.is_set():
        sig = signal.sigtimedwait(SIGNALS, 1.0)
        if sig is None:
            continue
        if sig.si_signo == signal.SIGHUP:
            log.info("SIGHUP: reading the users file again")
            service.reload()
        elif sig.si_signo == signal.SIGUSR1:
            logsetup.reopen(handler)
        else:
            log.info("%s: stopping", signal.Signals(sig.si_signo).name)
            break
    service.stop()
    log.info("stopped")
    return 1 if service.failed.is_set() else 0
