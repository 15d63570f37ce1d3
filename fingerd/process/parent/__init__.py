"""The root parent: what runs only there.

Its loop and the daemon's life: ``supervisor``, ``states``, ``monitor`` (its
answers to the workers' requests), ``reloads`` and ``reloading`` (a reload's life,
the configuration read again), ``worker_handle``, ``forking`` and ``descendants``
(the worker processes), ``filewriter`` and ``writer_handle`` (the writer child,
seen from here), ``logrelay`` (its end of the worker's log pipe),
``notify`` (telling systemd). Before the loop, in the ``fingerd`` command:
``listeners``, ``activation`` and ``accounts`` (a reload uses them again),
``daemonize``; ``address_check`` is ``fingerd -t``, which starts nothing.

Nothing here is imported by the worker or the writer child (the log pipe's
format, which ``logrelay`` reads and the worker's ``logpipe`` writes, is
``fingerd.process.logformat``): the child ``forking`` forks runs
``worker.main``, the one ``writer_handle`` forks ``writer.child``; the worker
drops to the ``accounts.Account`` the parent resolved, named for type checking
only.
"""
