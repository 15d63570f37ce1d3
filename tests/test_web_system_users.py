"""The web directory with system_users: finger's privacy rules (.nofinger, min_uid,
list_users) hold for real accounts made for the test, and their plan files reach a page
only through the output rules."""

import json
import os
import time

import pytest

from fingerd.finger.utmp import Session
from tests.support.accounts import made_accounts, write_as
from tests.support.markers import needs_root
from tests.support.utmp import pack_session

pytestmark = needs_root

#: Names and uids of their own, so that suites running beside this one keep theirs.
PREFIX = "fgweb"
FIRST_UID = 42101


@pytest.fixture
def accounts(public_dir):
    """fgweb1 (below min_uid), fgweb2 (.nofinger), fgweb3 (a plan with escapes), fgweb4 (a
    full name in Latin-1, as an old passwd file or a directory may hold)."""
    gecos = {f"{PREFIX}{i}": text for i, text in
             enumerate(["Below Min", "Hidden Person", "Ada <Lovelace>", b"J\xf6rg Latin"], 1)}
    with made_accounts(os.path.join(public_dir, "home"), gecos, FIRST_UID) as made:
        yield made


def start(make_daemon, ports, public_dir, accounts, list_users):
    uid2, home2 = accounts["fgweb2"]
    write_as(os.path.join(home2, ".nofinger"), b"", uid2)
    write_as(os.path.join(home2, ".plan"), b"secret plan\n", uid2)
    uid3, home3 = accounts["fgweb3"]
    write_as(os.path.join(home3, ".plan"),
             b"<script>alert(1)</script>\n\x1b[2J\x1b[31mred\x07 & done\n", uid3)
    utmp = os.path.join(public_dir, "utmp")
    with open(utmp, "wb") as f:
        for name, line in (("fgweb1", "pts/1"), ("fgweb2", "pts/2"), ("fgweb3", "pts/3"),
                           ("fgweb4", "pts/4")):
            f.write(pack_session(Session(name, line, "", int(time.time()) - 60)))
    return make_daemon(users=b"alice:Happy\n", finger__system_users="yes",
                       finger__min_uid=str(FIRST_UID + 1), finger__utmp_file=utmp,
                       finger__wtmp_file=os.path.join(public_dir, "no-wtmp"),
                       finger__lastlog_file=os.path.join(public_dir, "no-lastlog"),
                       finger__mail_dir=public_dir, finger__list_users=list_users) \
        .listen("web", f"127.0.0.1:{ports.take()}").start()


@pytest.fixture
def listed(make_daemon, ports, public_dir, accounts):
    return start(make_daemon, ports, public_dir, accounts, "yes")


@pytest.fixture
def unlisted(make_daemon, ports, public_dir, accounts):
    return start(make_daemon, ports, public_dir, accounts, "no")


def get(d, path):
    head, _, body = d.web(f"GET {path} HTTP/1.0\r\n\r\n".encode()).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode("utf-8")


@pytest.mark.parametrize("name", ["fgweb1", "fgweb2", "root", "nobody"])
def test_accounts_finger_hides_are_404_on_every_path(listed, name):
    assert listed.finger(f"/W {name}\r\n".encode()) == b"No such user\r\n"
    status, page = get(listed, f"/users/{name}")
    assert status == 404 and "<h1>No such user</h1>" in page
    status, body = get(listed, f"/api/users/{name}")
    assert status == 404 and json.loads(body) == {"user": name, "found": False}
    assert "secret plan" not in page + body


def test_an_account_s_page_is_finger_s_long_answer_filtered_then_escaped(listed):
    finger = listed.finger(b"/W fgweb3\r\n").decode()
    assert "Plan:\r\n<script>alert(1)</script>\r\n[2J[31mred & done\r\n" in finger
    status, page = get(listed, "/users/fgweb3")
    assert status == 200
    assert "Name: Ada &lt;Lovelace&gt;" in page
    assert "Plan:\n&lt;script&gt;alert(1)&lt;/script&gt;\n[2J[31mred &amp; done" in page
    assert "<script" not in page and "\x1b" not in page and "\x07" not in page
    status, body = get(listed, "/api/users/fgweb3")
    assert status == 200
    assert json.loads(body)["answer"] == finger.replace("\r\n", "\n").rstrip("\n")
    assert "\\u001b" not in body and "<" not in body


def test_the_list_shows_what_finger_s_list_shows(listed):
    finger = listed.finger(b"\r\n").decode()
    assert "fgweb3: Ada <Lovelace> (pts/3)" in finger
    assert "fgweb1" not in finger and "fgweb2" not in finger
    status, page = get(listed, "/")
    assert status == 200
    assert '<a href="/users/fgweb3">fgweb3</a></td><td>Ada &lt;Lovelace&gt; (pts/3)</td>' in page
    assert "fgweb1" not in page and "fgweb2" not in page
    status, body = get(listed, "/api/users")
    assert json.loads(body)["users"] == [{"user": "alice", "status": "Happy"},
                                         {"user": "fgweb3", "status": "Ada <Lovelace> (pts/3)"},
                                         {"user": "fgweb4", "status": "J\ufffdrg Latin (pts/4)"}]


def test_a_full_name_that_is_not_utf_8_is_answered_with_replacement_characters(listed):
    # Python reads the account database's fields with surrogateescape: the byte 0xf6
    # is a lone surrogate, which no UTF-8 answer can carry.
    assert listed.finger(b"fgweb4\r\n").decode("utf-8").endswith("Name: J\ufffdrg Latin\r\n")
    assert "Name: J\ufffdrg Latin\r\n" in listed.finger(b"/W fgweb4\r\n").decode("utf-8")
    status, page = get(listed, "/users/fgweb4")
    assert status == 200 and "Name: J\ufffdrg Latin" in page
    status, body = get(listed, "/api/users/fgweb4")
    assert status == 200 and "Name: J\ufffdrg Latin" in json.loads(body)["answer"]
    assert "Traceback" not in listed.log()


def test_without_list_users_no_account_is_listed(unlisted):
    status, page = get(unlisted, "/")
    assert status == 200 and "fgweb" not in page and "alice" not in page
    status, body = get(unlisted, "/api/users")
    assert status == 403 and "fgweb" not in body
    assert get(unlisted, "/users/fgweb3")[0] == 200
