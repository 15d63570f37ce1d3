"""Everything that answers clients, assembled in one process.

Given the configuration, a loaded store and listening sockets bound
elsewhere, it runs one server thread per service, the shared pool and the
watcher, and stops them in order. It never binds and never changes
privileges, so a privileged parent can hand it its sockets.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from fingerd.accesslog import AccessLog
from fingerd.finger.answer import Rules
from fingerd.finger.forward import Forwarder
from fingerd.finger.output import Renderer
from fingerd.finger.pages import Pages
from fingerd.finger.sources import BoundedSource, Directory, FileSource, Source, SystemSource
from fingerd.finger.web import Site
from fingerd.limits import RESERVED_DESCRIPTORS, STOP_GRACE_SECONDS
from fingerd.serving.allow import allowing
from fingerd.serving.finger import FingerNeeds, finger_service
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.loop import ServingLoop
from fingerd.serving.metrics_http import METRICS_MAX_CONNECTIONS, metrics_service
from fingerd.serving.pool import Pool
from fingerd.serving.service import ServiceSpec
from fingerd.serving.setter import Requesters, SetterNeeds, setter_service
from fingerd.serving.web import web_service
from fingerd.token_bucket import RateLimit
from fingerd.users.watcher import Watcher

if TYPE_CHECKING:
    from fingerd.config import Config
    from fingerd.metrics import Metrics
    from fingerd.users.backends import ConfiguredStore

log = logging.getLogger(__name__)


class Service:
    """Every service on its ``sockets`` (a list a service name), over the loaded ``store``."""

    def __init__(self, config: Config, sockets: dict[str, list[socket.socket]],
                 store: ConfiguredStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._config = config
        self._sockets = sockets
        self._pool: Pool | None = None
        self._servers: list[ServingLoop] = []
        self._threads: list[threading.Thread] = []
        self._watcher: Watcher | None = None
        self.failed = threading.Event()

    def start(self, held: bool = False) -> None:
        """Start serving on every socket, or, ``held``, everything but accepting until
        ``accept``; returns at once."""
        config = self._config
        self._pool = Pool(config.threads)
        self.metrics.pool_busy.set_function(self._pool.busy)
        self.metrics.pool_queued.set_function(self._pool.queued)
        sockets = self._sockets
        access_log = AccessLog(config.log_queries) if config.access_log else None
        gates = budgets(affordable_connections(config.max_connections), config.max_per_source,
                        web=bool(sockets["web"]))
        # Scrapes are not counted, so that a scrape does not see itself.
        self.metrics.connections_active.set_function(
            lambda: gates["finger"].active + gates["setter"].active + gates["web"].active)

        # Every service's deadlines: seconds for a whole request, and for one while crowded.
        timeouts = (config.request_timeout,
                    min(config.first_byte_timeout or config.request_timeout,
                        config.request_timeout))
        directory = build_directory(config, self.store)
        # What keys the answer caches: the store's table, read as the attribute it is.
        current_table = partial(getattr, self.store, "table")
        rules = Rules(config.list_users, config.forwarding, config.forward_allow)
        renderer = Renderer(config.replacements, config.high_bytes)
        forward = Forwarder(config.forward_timeout) if config.forwarding else None
        services: list[ServiceSpec] = []
        if sockets["finger"]:
            services.append(allowing(finger_service(
                gates["finger"], *timeouts, FingerNeeds(directory, rules, renderer, forward),
                lookups_block=config.system_users, users=current_table,
                proxy_from=config.finger_proxy_from if config.finger_proxy_protocol else None),
                config.finger_allow_from))
        if sockets["setter"]:
            rate_limit = RateLimit(config.setter_rate_limit) if config.setter_rate_limit \
                else None
            services.append(setter_service(
                gates["setter"], *timeouts,
                SetterNeeds(self.store, config.setter_policy,
                            Requesters(config.setter_admin_group, config.request_timeout),
                            rate_limit),
                self.metrics))
        if sockets["metrics"]:
            services.append(metrics_service(gates["metrics"], *timeouts, self.metrics.registry))
        if sockets["web"]:
            site = Site(directory, rules, renderer, Pages(site_name()))
            services.append(allowing(web_service(
                gates["web"], *timeouts, site, lookups_block=config.system_users,
                users=current_table,
                proxy_from=config.web_proxy_from if config.web_proxy_protocol else None),
                config.web_allow_from))
        self._servers = [ServingLoop(sockets[service.name], service, self._pool, self.metrics,
                                     access_log)
                         for service in services]
        self._watcher = Watcher(self.store, config.reload_interval)
        self._watcher.start()
        for server in self._servers:
            if held:
                server.listeners.hold()
            name = f"fingerd-{server.service.name}"
            thread = threading.Thread(target=self._serve, args=(server,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, server: ServingLoop) -> None:
        try:
            server.serve_forever()
        except Exception:
            log.critical("%s server failed; stopping", server.service.name, exc_info=True)
            self.failed.set()
        finally:
            server.listeners.close()  # ended, it accepts no more: a stop need not wait

    def reload(self) -> None:
        """Read the users file again at once (SIGHUP); nothing before ``start``."""
        if self._watcher is not None:
            self._watcher.poke()

    def accept(self) -> None:
        """Accept on every socket ``start`` held; idempotent."""
        for server in self._servers:
            server.listeners.open_now()

    def stop(self, grace: float = STOP_GRACE_SECONDS,
             not_accepting: Callable[[], None] = lambda: None) -> None:
        """Stop accepting, and once no server does, call ``not_accepting``; finish the
        requests in progress within ``grace`` seconds, close what ``start`` started.

        A client already connected still gets its answer if its query arrives
        within the grace period.
        """
        deadline = time.monotonic() + grace
        for server in self._servers:
            server.begin_shutdown(grace)
        if all(server.listeners.closed.wait(_left(deadline)) for server in self._servers):
            not_accepting()
        for server in self._servers:
            server.wait_stopped(_left(deadline) + 1.0)
        if self._pool is not None and not self._pool.stop(_left(deadline)):
            log.warning("answers still in progress after %.1f s were abandoned", grace)
        if self._watcher is not None:
            self._watcher.stop(_left(deadline))
        for thread in self._threads:
            thread.join(_left(deadline))
        for server in self._servers:
            server.close()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def budgets(max_connections: int, per_source: int, web: bool = False,
            ) -> dict[str, ConnectionGate]:
    """Each service's own gate, so that no service's clients can take another's slots.

    ``max_connections`` is shared out: the setter gets an eighth (at least
    one), the web directory, when it listens, a quarter (at least one),
    finger the rest (at least one); the metrics endpoint has
    METRICS_MAX_CONNECTIONS beside them, so a flood of finger clients
    cannot hide it from the scraper. One account holds at most ``per_source``
    of the setter's share and at most half of it, since the share is 32 by
    default, as ``max_per_source`` is: one account would take it whole. One
    address holds at most half the metrics endpoint's, whatever ``per_source``,
    so that no one address hides it from a scraper at another.
    """
    setter = max(1, max_connections // 8)
    web_share = max(1, max_connections // 4) if web else 0
    setter_per_source = min(per_source, setter // 2) if per_source and setter > 1 else per_source
    return {"finger": ConnectionGate(max(1, max_connections - setter - web_share), per_source),
            "setter": ConnectionGate(setter, setter_per_source),
            "web": ConnectionGate(web_share, per_source),
            "metrics": ConnectionGate(METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS // 2)}


def site_name() -> str:
    """What the web pages call the site: this host's finger directory."""
    return f"Finger directory of {socket.gethostname()}"


def affordable_connections(max_connections: int, descriptors: int | None = None) -> int:
    """``max_connections``, lowered with a warning when the descriptor limit cannot hold
    that many connections besides the daemon's own: an over-committed server would
    leave clients to time out instead of telling them it is busy."""
    if descriptors is None:
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = descriptors - RESERVED_DESCRIPTORS - METRICS_MAX_CONNECTIONS
    if descriptors == resource.RLIM_INFINITY or max_connections <= room:
        return max_connections
    lowered = max(1, room)
    log.warning("max_connections = %d needs more descriptors than the limit of %d allows; "
                "serving at most %d connections", max_connections, descriptors, lowered)
    return lowered


def build_directory(config: Config, store: ConfiguredStore) -> Directory:
    """The users file first, then, with ``system_users``, the system's accounts.

    An account's answer is made within ``request_timeout``, and at most half
    the pool's threads make such answers at once, stuck ones included (the
    next waits while none is stuck: finger/bounded.py), so that a hung NSS or
    home directory leaves the other half to the users file.
    """
    sources: list[Source] = [FileSource(store)]
    if config.system_users:
        sources.append(BoundedSource(
            SystemSource(config.min_uid, config.max_uid, config.plan_files,
                         config.plan_max_bytes, config.utmp_file,
                         lastlog_file=config.lastlog_file, wtmp_file=config.wtmp_file,
                         mail_dir=config.mail_dir),
            config.request_timeout, max(1, config.threads // 2)))
    return Directory(sources)
