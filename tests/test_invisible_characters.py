"""No invisible character (Unicode categories Cf, Zl and Zp) reaches the wire, through
real sockets: finger's answers, a forwarded answer and the web directory's pages and JSON
(contract, section 5)."""

import json
import socket
import threading

import pytest

from tests.support.invisible import INVISIBLE
from tests.support.markers import needs_root
from tests.support.net import skip_unless_free

#: A status holds at most 256 bytes, so the characters are spread over users ``u0``...
_CHUNKS = [INVISIBLE[i:i + 40] for i in range(0, len(INVISIBLE), 40)]
NAMES = [f"u{i}" for i in range(len(_CHUNKS))]
USERS = "".join(f"{name}:seen {name} {'.'.join(chunk)}\n"
                for name, chunk in zip(NAMES, _CHUNKS)).encode()


def reaching(text):
    """The invisible characters in ``text``, sorted."""
    return sorted(set(INVISIBLE).intersection(text))


@pytest.fixture
def directory(make_daemon, ports):
    return make_daemon(users=USERS, finger__list_users="yes").listen(
        "web", f"127.0.0.1:{ports.take()}").start()


def test_finger_answers_hold_none(directory):
    queries = ["", *NAMES, *(f"/W {name}" for name in NAMES)]
    text = "".join(directory.finger(f"{query}\r\n".encode()).decode() for query in queries)
    assert reaching(text) == []
    assert all(f"seen {name} " in text for name in NAMES)


def http_body(daemon, path):
    raw = daemon.web(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body.decode("utf-8")


def test_the_web_directorys_pages_and_json_hold_none(directory):
    pages = [http_body(directory, path)
             for path in ["/", *(f"/users/{name}" for name in NAMES)]]
    documents = [http_body(directory, path)
                 for path in ["/api/users", *(f"/api/users/{name}" for name in NAMES)]]
    assert reaching("".join(pages + documents)) == []
    decoded = json.dumps([json.loads(doc) for doc in documents], ensure_ascii=False)
    assert reaching(decoded) == []
    assert all(f"seen {name} " in page for name, page in zip(NAMES, pages[1:]))


class OneAnswerUpstream(threading.Thread):
    """A finger server on ``host``:79 that answers one connection with ``reply``."""

    def __init__(self, host, reply):
        super().__init__(daemon=True)
        skip_unless_free(host, 79)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 79))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.reply = reply

    def run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            conn.recv(1024)
            conn.sendall(self.reply)


@needs_root
def test_a_forwarded_answer_holds_none(make_daemon):
    reply = "".join(f"line {i}: {''.join(chunk)} end\r\n" for i, chunk in enumerate(_CHUNKS))
    upstream = OneAnswerUpstream("127.0.0.11", reply.encode())
    upstream.start()
    try:
        d = make_daemon(finger__forwarding="yes", finger__forward_timeout="5").start()
        text = d.finger(b"x@127.0.0.11\r\n").decode()
    finally:
        upstream.sock.close()
        upstream.join(10)
    assert reaching(text) == []
    assert text == "".join(f"line {i}:  end\r\n" for i in range(len(_CHUNKS)))
