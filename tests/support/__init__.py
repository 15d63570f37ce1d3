"""The test suite's library: what tests share besides fixtures.

- ``net``: free loopback ports and a client's exchange with a server.
- ``polling``: waiting for a condition with a deadline.
- ``daemon``: a real ``fingerd`` process configured for one test, and code it runs first.
- ``disk_faults``: a directory's fsync that fails, or an fsync that never returns, as
  on a disk going bad.
- ``acl``: a POSIX ACL entry granted without setfacl.
- ``engines``: a real redis-server and HAProxy (from the shipped example), on loopback.
- ``resp_relay``: a relay in front of redis-server that acknowledges transactions late.
- ``procfs``: processes as /proc shows them.
- ``children``: a function run in a forked child, its result brought back.
- ``markers``: skips for root-only tests and missing tools.
- ``utmp``: utmp, wtmp and lastlog records as login(1) writes them.
- ``accounts``: real accounts made with useradd, and their files.
- ``hang_nss``: a library preloaded into a real daemon whose account lookups then hang.
- ``in_fingerd``: Debian's in.fingerd run for one query as inetd runs it.
- ``system_logins``: login records and spools written where the system keeps them,
  and put back.
- ``fuzzing``: the Hypothesis profiles, and feeding a parser as the loop does.
- ``source_tree``: a copy of the checkout to build an sdist or a Debian package from.
- ``users_files``: Hypothesis strategies for names, statuses and valid users files.
- ``hostile_parent``: a real parent whose workers run test bodies (run as a script).
- ``environments``: the daemon tests run again in other environments, two runs at a
  time, each on a loopback of its own.

Pytest fixtures built from these live in ``tests/conftest.py``; tests import
helpers from here, never from conftest.
"""

import os

#: The source tree the tests run fingerd from.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def in_ci():
    """Whether the suite runs in CI (``.ci/run`` sets ``CI=true``): then a missing tool
    fails its test rather than skipping it, and properties try 1,000 examples each."""
    return bool(os.environ.get("CI"))
