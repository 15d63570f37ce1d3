"""The daemon's processes, a package each, and what more than one of them runs.

- ``parent``: the root parent, which binds, forks and supervises, and never
  serves a client;
- ``worker``: the unprivileged worker, the only process that serves clients
  (with ``fingerd.serving``, ``fingerd.finger`` and ``fingerd.users``);
- ``writer``: the child that writes the users file for the parent.

Here, shared: ``channel`` (both ends of the worker's requests to the parent),
``logformat`` (the framing and bounds of the worker's log pipe, both ends),
``parent_counts`` (written by the parent, exported by the worker), ``pidfile``
and ``reload_status`` (written by the parent, read by ``fingerd-ctl``; the
pidfile is probed by ``fingerd -t`` too), and ``exits_and_signals``, which every
process shares and which imports nothing of the project.
"""
