"""The worker: the only process that talks to clients, never root. ``main`` is its life
(forked by the parent's ``forking``), ``confine`` and ``privdrop`` what it gives up
before it serves, ``logpipe`` its end of the log pipe. What it serves with is
``fingerd.serving``, ``fingerd.finger`` and ``fingerd.users``."""
