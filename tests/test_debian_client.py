"""End to end with Debian's own finger client on the real port 79."""

import os
import subprocess

import pytest

from tests.support.markers import needs_tool
from tests.support.net import skip_unless_free

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="binding port 79 needs root"),
    needs_tool("finger", "finger"),
]


@pytest.fixture
def on_port_79(make_daemon):
    skip_unless_free("127.0.0.1", 79)
    return make_daemon().listen("finger", "127.0.0.1:79").start()


def finger(*args):
    return subprocess.run(["finger", *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_finger_user_at_localhost_prints_the_status(on_port_79):
    result = finger("alice@127.0.0.1")
    assert result.returncode == 0
    assert "Happy and well" in result.stdout


def test_finger_long_list_gets_the_refusal(on_port_79):
    result = finger("-l", "@127.0.0.1")
    assert "Finger online user list denied" in result.stdout
    assert "Happy" not in result.stdout


def test_finger_unknown_user(on_port_79):
    assert "No such user" in finger("carol@127.0.0.1").stdout
