"""Skip markers: tests that need root, IPv6 loopback, or a tool installed."""

import os
import shutil
import socket

import pytest

from tests.support import in_ci

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="privilege separation is only exercised as root")


def needs_tool(name, package):
    """Skip a test when the command ``name`` is missing, except in CI, where .ci/run
    installs it and its absence is a failure rather than a silent skip."""
    missing = shutil.which(name) is None and not in_ci()
    return pytest.mark.skipif(missing, reason=f"{name} is not installed (Debian package "
                                              f"{package})")


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
