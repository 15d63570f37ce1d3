"""Skip markers: tests that need root, and tests that need a tool installed."""

import os
import shutil

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="privilege separation is only exercised as root")


def needs_tool(name, package):
    """Skip a test when the command ``name`` is missing, except in CI, where .ci/run
    installs it and its absence is a failure rather than a silent skip."""
    missing = shutil.which(name) is None and not os.environ.get("CI")
    return pytest.mark.skipif(missing, reason=f"{name} is not installed (Debian package "
                                              f"{package})")
