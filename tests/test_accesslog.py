"""The access log: one unforgeable line per request."""

import os
import pwd
import re

from fingerd.accesslog import escape
from tests.support.polling import wait_until

LINE = re.compile(r"access service=(\w+) peer=127\.0\.0\.1 kind=([\w-]+) outcome=(\w+) "
                  r"bytes=(\d+) seconds=\d+\.\d{6}( login=\"[^\"]*\")?( user=\".*\")?$")
#: The login the setter's lines name: the account this suite runs as.
ME = pwd.getpwuid(os.geteuid()).pw_name


def access_lines(d, count):
    wait_until(lambda: d.log().count(" access ") >= count, what=f"{count} access lines")
    return [re.sub(r"^worker\[\d+\]: ", "", line.split(": INFO ", 1)[1])
            for line in d.log().splitlines() if " access " in line]


def test_escape_makes_any_text_one_printable_line():
    assert escape('al"ice\\\n\x1b[2J\u202e\xff') == '"al\\"ice\\\\\\x0a\\x1b[2J\\u202e\\xff"'
    assert escape("x" * 100) == '"' + "x" * 64 + '..."'


def test_one_line_per_request_without_names_unless_asked(make_daemon):
    daemon = make_daemon(fingerd__access_log="yes").start()
    daemon.finger(b"alice\r\n")
    daemon.finger(b"nobody\r\n")
    daemon.setter(b"bob\r\nAway\r\n")
    lines = access_lines(daemon, 3)
    parsed = [LINE.match(line).groups() for line in lines]
    assert parsed == [("finger", "user", "found", "16", None, None),
                      ("finger", "user", "not_found", "14", None, None),
                      ("setter", "set", "ok", "4", f' login="{ME}"', None)]
    assert "alice" not in "".join(lines)


def test_names_are_logged_escaped_with_log_queries(make_daemon):
    d = make_daemon(fingerd__access_log="yes", fingerd__log_queries="yes").start()
    d.finger(b"evil\rfingerd[1]: INFO forged\x1b[2J\r\n")
    line = access_lines(d, 1)[0]
    assert line.endswith(' user="evil\\x0dfingerd[1]: INFO forged\\x1b[2J"')
    assert "\r" not in d.log() and "\x1b" not in d.log()


def test_access_log_is_off_by_default_but_setter_changes_are_always_logged(make_daemon):
    d = make_daemon().start()
    d.finger(b"alice\r\n")
    d.setter(b"bob\r\nAway\r\n")
    wait_until(lambda: f"setter: 127.0.0.1 (uid {os.geteuid()}, {ME}) set the status of bob"
               in d.log(),
               what="the setter's line")
    assert " access " not in d.log()
