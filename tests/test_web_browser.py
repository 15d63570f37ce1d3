"""The web directory in real browsers: headless Chromium renders the pages (a screenshot of
the expected size that is not blank) and its DOM shows the users; lynx -dump, a text
browser, gives the same information."""

import os
import signal
import subprocess

import pytest

from tests.support.markers import needs_tool
from tests.support.png import read_png

WIDTH, HEIGHT = 800, 600
USERS = b"alice:Happy and well\nbob:Sleeping <in> the sun\n"


@pytest.fixture
def web(make_daemon, ports):
    return make_daemon(users=USERS, finger__list_users="yes").listen(
        "web", f"127.0.0.1:{ports.take()}").start()


def run(command, returncode=0, timeout=90):
    """Run a browser in a session of its own, expecting ``returncode``; on timeout its whole
    group is ended, by the id of the process started."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == returncode, command
    return out


def chromium(public_dir, *args):
    """Headless Chromium as root (hence no sandbox), with a profile of its own."""
    return run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--hide-scrollbars", f"--user-data-dir={os.path.join(public_dir, 'chromium')}",
                f"--window-size={WIDTH},{HEIGHT}", *args])


@needs_tool("chromium", "chromium")
@pytest.mark.parametrize("path", ["/", "/users/alice"])
def test_chromium_renders_a_real_page(web, public_dir, path):
    shot = os.path.join(public_dir, "shot.png")
    chromium(public_dir, f"--screenshot={shot}", f"http://127.0.0.1:{web.web_port}{path}")
    with open(shot, "rb") as f:
        image = read_png(f.read())
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    counts = image.colours()
    background = max(counts.values())
    # Text, rules and links: many colours (antialiasing), and a real share of the page
    # that is not background, yet far from all of it.
    assert len(counts) >= 20
    assert 0.005 < 1 - background / (WIDTH * HEIGHT) < 0.5


@needs_tool("chromium", "chromium")
def test_chromium_s_dom_shows_the_users_and_their_statuses(web, public_dir):
    dom = chromium(public_dir, "--dump-dom", f"http://127.0.0.1:{web.web_port}/").decode()
    assert '<a href="/users/alice">alice</a></td><td>Happy and well</td>' in dom
    assert '<a href="/users/bob">bob</a></td><td>Sleeping &lt;in&gt; the sun</td>' in dom
    user = chromium(public_dir, "--dump-dom",
                    f"http://127.0.0.1:{web.web_port}/users/bob").decode()
    assert "<pre>Login: bob\nStatus: Sleeping &lt;in&gt; the sun</pre>" in user


@needs_tool("lynx", "lynx")
def test_lynx_dump_lists_the_users_and_shows_a_users_answer(web):
    base = f"http://127.0.0.1:{web.web_port}"
    text = run(["lynx", "-dump", "-nolist", "-width=100", base + "/"]).decode()
    lines = [line.split() for line in text.splitlines()]
    assert ["alice", "Happy", "and", "well"] in lines
    assert ["bob", "Sleeping", "<in>", "the", "sun"] in lines
    assert "User name" in text
    user = run(["lynx", "-dump", "-nolist", base + "/users/alice"]).decode()
    assert "Login: alice" in user and "Status: Happy and well" in user
    # lynx -dump says a 404 by its exit status, and shows the page all the same.
    missing = run(["lynx", "-dump", "-nolist", base + "/users/carol"], returncode=1).decode()
    assert "No such user" in missing
