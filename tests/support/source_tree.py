"""A copy of the source tree to build from, so that a build's leftovers (egg-info,
build/, debian/ staging) never land in the checkout other tests run from."""

import shutil

from tests.support import ROOT

#: What a build or a test run leaves in a checkout, never part of the source.
_NOT_SOURCE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist",
                                     ".pytest_cache", ".hypothesis", ".pybuild")


def copy_source(destination):
    """Copy the checkout to ``destination`` (which must not exist); returns it."""
    shutil.copytree(ROOT, destination, ignore=_NOT_SOURCE, symlinks=True)
    return destination
