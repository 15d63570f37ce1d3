"""`python -m fingerd` runs the daemon."""

from fingerd.cli import main

raise SystemExit(main())
