"""The users file writer child: forked by the root parent, root as the parent, doing
nothing but writes of the users file (``child``). The parent's side, which forks it and
hands it each request, is ``fingerd.process.parent.filewriter`` and ``writer_handle``."""
