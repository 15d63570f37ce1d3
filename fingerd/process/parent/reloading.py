"""Reading the configuration again for a reload (HUP), checked whole before anything changes.

``prepare`` is what the supervisor calls: it reads and validates the file,
the account and the store as a start would, and binds the new listening
addresses, keeping the sockets of addresses that stay (their queued clients
included). Either it returns a Plan and nothing served has changed yet, or
it raises ReloadRefused and nothing at all has changed.

Two settings cannot change while the daemon runs: the pidfile (its lock is
held for the daemon's whole life) and the log file (the parent's own log,
opened before it detached). A reload that changes them applies the rest and
says, once, that these wait for a restart.
"""

import dataclasses
import logging
import os
import socket
from typing import Optional

from fingerd.config import Config, ConfigError, load_config
from fingerd.config_keys import Address
from fingerd.process.parent import activation, listeners
from fingerd.process.parent.accounts import AccountError, resolve_account
from fingerd.process.parent.reloads import ReloadRefused
from fingerd.users import redis_password
from fingerd.users.backends import redis_problem

log = logging.getLogger("fingerd")

#: ``(section, key)`` of the settings a reload keeps as they are.
RESTART_ONLY = (("fingerd", "pidfile"), ("fingerd", "log_file"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """A configuration to serve, with its account and sockets; ``unused`` are the
    sockets of addresses no longer configured, ``fresh`` those bound for it;
    ``directories``, those made for the daemon's Unix sockets, its own and earlier."""

    config: object
    account: object
    sockets: dict
    unused: tuple = ()
    fresh: tuple = ()
    directories: listeners.MadeDirectories = dataclasses.field(
        default_factory=listeners.MadeDirectories)

    def close_unused(self):
        """Once no worker serves them: close the sockets of addresses dropped, and remove
        the directories made for them."""
        listeners.close_sockets(self.unused)
        self.directories.remove_empty()

    def close_fresh(self):
        """The plan is given up: close what was bound for it, and remove the directories
        made for it."""
        listeners.close_sockets(self.fresh)
        self.directories.remove_empty()


def prepare(current: Config, sockets: activation.Sockets, privileged: Optional[bool] = None,
            handover: activation.Handover = activation.NO_HANDOVER,
            directories: Optional[listeners.MadeDirectories] = None) -> Plan:
    """The Plan for the configuration file of ``current`` read again, served until now
    with ``sockets``; raises ReloadRefused. ``privileged``: whether the worker drops to
    the configured account (as at start: when the daemon runs as root). The sockets of
    ``handover`` stay as they are, and their roles' addresses are not bound.
    ``directories``: those made for the daemon's Unix sockets until now, to which the
    ones made for new sockets are added, so that the stop removes them too."""
    if privileged is None:
        privileged = os.geteuid() == 0
    try:
        config = redis_password.with_password(load_config(current.path))
        account = resolve_account(config)
    except ConfigError as exc:
        raise ReloadRefused("; ".join(exc.errors)) from None
    except AccountError as exc:
        raise ReloadRefused(str(exc)) from None
    if config.store_backend == "redis":
        problem = redis_problem()
        if problem:
            raise ReloadRefused(f"{config.where('store', 'backend')}: {problem}")
    config = _keep_restart_only(current, config)
    bindable = handover.to_bind(config)
    problem = listeners.privileged_port_problem(bindable)
    if problem:
        raise ReloadRefused(problem)
    if directories is None:
        directories = listeners.MadeDirectories()
    directories.before_binding(listeners.unix_socket_paths(bindable))
    try:
        bound, unused = listeners.rebind_all(bindable, handover.others(sockets))
    except listeners.BindError as exc:
        directories.remove_empty()
        ours = _holding_the_port(bindable, handover.others(sockets))
        raise ReloadRefused(f"{exc}; this daemon's own {', '.join(ours)} holds that port until "
                            "the reload is over (new addresses are bound before old ones "
                            "are closed): restart fingerd to make this change" if ours
                            else str(exc)) from None
    bound = handover.merged(bound)
    kept = {id(sock) for socks in sockets.values() for sock in socks}
    fresh = tuple(sock for socks in bound.values() for sock in socks if id(sock) not in kept)
    return Plan(config, account if privileged else None, bound, tuple(unused), fresh,
                directories)


def _holding_the_port(config, sockets):
    """The TCP addresses of ``sockets`` that ``config`` drops and that keep one of its new
    addresses from being bound: the same port and family, one of the two a wildcard.
    ``sockets`` leaves out systemd's, which the reload keeps and a restart does not free."""
    wanted = {(a.family, a.host, a.port) for a in (*config.finger_listen,
              *config.setter_listen, *config.metrics_listen, *config.web_listen)}
    held = {(6 if sock.family == socket.AF_INET6 else 4, *sock.getsockname()[:2])
            for socks in sockets.values() for sock in socks
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.fileno() != -1}
    wildcards = ("0.0.0.0", "::")
    return [str(Address(host, port)) for family, host, port in sorted(held - wanted)
            if any((f, p) == (family, port) and (host in wildcards or h in wildcards)
                   for f, h, p in wanted - held)]


def _keep_restart_only(current, config):
    """``config`` with the settings a reload cannot change as they are in ``current``;
    each one changed is named in the log."""
    kept = {}
    for section, key in RESTART_ONLY:
        old, new = getattr(current, key), getattr(config, key)
        if old != new:
            log.warning("%s: [%s] %s = %s takes effect at the next restart; %s stays in use "
                        "until then", config.where(section, key), section, key, new or "(empty)",
                        old or "(empty)")
            kept[key] = old
    return dataclasses.replace(config, **kept) if kept else config
