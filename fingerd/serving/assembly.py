"""Everything that answers clients, assembled in one process.

Given the configuration, a loaded store and listening sockets bound
elsewhere, it runs one server thread per socket, the shared pool and the
watcher, and stops them in order. It never binds and never changes
privileges, so a privileged parent can hand it its sockets.
"""

import logging
import threading
import time

from fingerd.accesslog import AccessLog
from fingerd.finger.answer import Rules
from fingerd.finger.forward import Forwarder
from fingerd.finger.output import Renderer
from fingerd.finger.sources import Directory, FileSource, SystemSource
from fingerd.limits import STOP_GRACE_SECONDS
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.handlers import FingerServer, SetterServer
from fingerd.serving.loop import Context
from fingerd.serving.metrics_http import METRICS_MAX_CONNECTIONS, MetricsServer
from fingerd.serving.pool import Pool
from fingerd.serving.requesters import Requesters
from fingerd.users.watcher import Watcher

log = logging.getLogger(__name__)


class Service:
    def __init__(self, config, sockets, store, metrics):
        self.store = store
        self.metrics = metrics
        self._config = config
        self._sockets = sockets
        self._pool = None
        self._servers = []
        self._threads = []
        self._watcher = None
        self.failed = threading.Event()

    def start(self):
        """Start serving on every socket; returns at once."""
        config = self._config
        self._pool = Pool(config.threads)
        self.metrics.pool_busy.set_function(self._pool.busy)
        self.metrics.pool_queued.set_function(self._pool.queued)
        access_log = AccessLog(config.log_queries) if config.access_log else None
        gate = ConnectionGate(config.max_connections, self.metrics.connections_active)
        context = Context(self._pool, gate, self.metrics, config.request_timeout, access_log)
        scrapes = Context(self._pool, ConnectionGate(METRICS_MAX_CONNECTIONS), self.metrics,
                          config.request_timeout)
        sockets = self._sockets
        directory = build_directory(config, self.store)
        rules = Rules(config.list_users, config.forwarding, config.forward_allow)
        renderer = Renderer(config.replacements, config.high_bytes)
        forward = Forwarder(config.forward_timeout) if config.forwarding else None
        requesters = Requesters(config.setter_admin_group)
        self._servers = (
            [FingerServer(s, context, directory, rules, renderer, forward,
                          lookups_block=config.system_users, users=self.store.users)
             for s in sockets["finger"]]
            + [SetterServer(s, context, self.store, config.setter_policy, requesters)
               for s in sockets["setter"]]
            + [MetricsServer(s, scrapes, self.metrics.registry) for s in sockets["metrics"]])
        self._watcher = Watcher(self.store, config.reload_interval)
        self._watcher.start()
        for server in self._servers:
            name = f"fingerd-{server.service}-{server.where}"
            thread = threading.Thread(target=self._serve, args=(server,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, server):
        try:
            server.serve_forever()
        except Exception:
            log.critical("%s server failed; stopping", server.service, exc_info=True)
            self.failed.set()

    def reload(self):
        """Read the users file again at once (SIGHUP)."""
        self._watcher.poke()

    def stop(self, grace=STOP_GRACE_SECONDS):
        """Stop accepting, finish the requests in progress within ``grace`` seconds, close.

        A client already connected still gets its answer if its query arrives
        within the grace period.
        """
        deadline = time.monotonic() + grace
        for server in self._servers:
            server.begin_shutdown(grace)
        for server in self._servers:
            server.wait_stopped(_left(deadline) + 1.0)
        if not self._pool.stop(_left(deadline)):
            log.warning("answers still in progress after %.1f s were abandoned", grace)
        self._watcher.stop(_left(deadline))
        for thread in self._threads:
            thread.join(_left(deadline))
        for server in self._servers:
            server.close()


def _left(deadline):
    return max(0.0, deadline - time.monotonic())


def build_directory(config, store):
    """The users file first, then, with ``system_users``, the system's accounts."""
    sources = [FileSource(store)]
    if config.system_users:
        sources.append(SystemSource(config.min_uid, config.max_uid, config.plan_files,
                                    config.plan_max_bytes, config.utmp_file))
    return Directory(sources)
