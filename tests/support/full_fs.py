"""Filling a small file system a test mounted (conftest's ``small_fs``)."""

import os

#: Most bytes a fill writes: a small file system is full long before.
MOST_BYTES = 4 * 1024 * 1024


def fill(directory):
    """Fill the file system of ``directory`` with a file ``filler``, whose path is
    returned; fails unless the file system was full before MOST_BYTES."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(MOST_BYTES // 4096):
            os.write(fd, b"\0" * 4096)
    except OSError:
        return filler
    finally:
        os.close(fd)
    raise AssertionError(f"{directory} took {MOST_BYTES} bytes without filling up")
