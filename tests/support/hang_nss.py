"""An account lookup that hangs in a real daemon: ``hang_nss.c`` built as a library to
preload (``LD_PRELOAD``), so that ``pwd.getpwnam`` of a name beginning with ``hung``
never returns, as behind a silent LDAP server."""

import os
import shutil
import subprocess

import pytest

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hang_nss.c")

#: The compiler's bound; it takes well under a second.
BUILD_TIMEOUT = 60


def build(directory):
    """The path of the library, compiled with ``cc`` into ``directory``; fails the test
    with the compiler's message when it cannot be built."""
    library = os.path.join(directory, "hang_nss.so")
    result = subprocess.run(
        [shutil.which("cc") or "cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", library,
         SOURCE, "-ldl"], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f"cc could not build {SOURCE}:\n{result.stderr}")
    return library
