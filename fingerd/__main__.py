"""`python -m fingerd` runs the daemon; `python -m fingerd.ctl` is fingerd-ctl."""

from fingerd.cli import main

raise SystemExit(main())
