"""The log file fingerd writes (README, "Metrics and logs")."""

import logging
import os
import stat

from fingerd import logsetup


def write(handler, message):
    handler.handle(logging.LogRecord("fingerd", logging.WARNING, __file__, 1, message, (),
                                     None))


def test_a_log_file_it_creates_is_readable_by_its_group_alone(tmp_path):
    path = tmp_path / "fingerd.log"
    old = os.umask(0o022)
    handler = logsetup.LogFileHandler(str(path))
    try:
        write(handler, "first line")
        os.rename(path, str(path) + ".1")
        handler.reopenIfNeeded()
        write(handler, "after the rotation")
    finally:
        os.umask(old)
        handler.close()
    assert stat.S_IMODE(os.stat(str(path) + ".1").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert "after the rotation" in path.read_text()
    assert "first line" not in path.read_text()


def test_an_existing_log_file_keeps_its_mode(tmp_path):
    path = tmp_path / "fingerd.log"
    path.write_text("")
    os.chmod(path, 0o600)
    handler = logsetup.LogFileHandler(str(path))
    try:
        write(handler, "a line")
    finally:
        handler.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "a line" in path.read_text()
