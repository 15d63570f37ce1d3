"""The root parent and the worker: processes, privileges, files they hold.

Where each module runs:

- the root parent: ``supervisor`` (the loop, the daemon's states), ``monitor``
  (its answers to the workers' requests), ``reloads`` and ``reloading`` (a
  reload's life, the configuration read again), ``worker_handle`` and
  ``states`` (each worker's phase and deadline, the daemon's states and its
  restart delays), ``forking`` and ``descendants`` (the worker processes),
  ``filewriter`` and ``writer_handle`` (the users file writer child, seen from
  the parent), ``priority``, ``listeners``, ``accounts``, ``pidfile``,
  ``reload_status``, ``daemonize``;
- the worker: ``worker.main``, ``worker.confine``, ``worker.privdrop``,
  ``worker.logpipe`` (its end of the log pipe);
- the writer child: ``writer.child``;
- both ends of a pipe between them: ``channel`` (the worker's requests),
  ``logrelay`` (its log lines), ``parent_counts``;
- all of them: ``exits_and_signals``, which imports nothing of the project.
"""
