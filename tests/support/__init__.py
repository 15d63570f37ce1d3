"""The test suite's library: what tests share besides fixtures.

- ``net``: free loopback ports and a client's exchange with a server.
- ``polling``: waiting for a condition with a deadline.
- ``daemon``: a real ``fingerd`` process configured for one test.
- ``procfs``: processes as /proc shows them.
- ``markers``: skips for root-only tests and missing tools.
- ``utmp``: login records as login(1) writes them.
- ``users_files``: Hypothesis strategies for names, statuses and valid users files.
- ``hostile_parent``: a real parent whose workers run test bodies (run as a script).

Pytest fixtures built from these live in ``tests/conftest.py``; tests import
helpers from here, never from conftest.
"""

import os

#: The source tree the tests run fingerd from.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
