#!/usr/bin/env python3
"""Fuzz a running fingerd over every port it listens on, and check that it keeps serving.

Starts fingerd as scripts/bench.py does (its real process model: started as
root, the worker runs as nobody), on free loopback ports, with a temporary
directory of its own: configuration, users file, the setter on TCP and on a
Unix socket, the metrics endpoint, the web directory, the list of users on
and a request_timeout of 2 s. Then sends it --inputs inputs, each on a new
connection, a few dozen in flight, shared out among the finger port, the
setter's TCP port and Unix socket, the metrics endpoint and the web
directory:

- random bytes, from none to 64 KiB;
- each port's valid requests, mutated: bits flipped, bytes changed, inserted,
  removed or repeated, truncations, lines made huge, CR/LF games, NULs, UTF-8
  oddities (overlong forms, surrogates, a BOM, separators, bidi controls,
  bytes no UTF-8 holds), `@` chains, `/W` variants, pieces of other requests;
- well-formed web requests for generated paths (percent escapes, NULs,
  slashes, dots, markup, long names);
- each sent whole, in pieces, then half-closed or not, or cut off by the client
  with a reset or a close before it reads, or a connection that sends nothing.

TCP clients come from 127.0.0.1 to 127.0.0.8 in turn, so that what most
inputs meet is the parsers, not the per-source limit. Every answer is sorted
by kind. After every --batch inputs, with none in flight, honest clients
check that the daemon still answers correctly: a known user's status, `No
such user` for an unknown one, a status set through the setter (TCP and Unix
socket in turn) and read back by finger, the known user's JSON on the web
directory, and a scrape; that the worker is
the one it started with (same pid, `fingerd_worker_restarts_total` 0); that
its resident memory (VmRSS) has not grown by more than --max-rss-growth MiB;
and that the daemon's log holds no traceback.

A failure is any of: a failed check, `Internal error in server` (or a 500),
a control character in a finger answer, a setter or HTTP answer not in its
protocol, a connection refused or never closed by the daemon (it must close
each one within request_timeout, plus a margin). At the end it prints a
summary (inputs per port, duration, answers by kind, errors, RSS at start,
at most and at the end, restarts), also written as JSON with --json, and
exits 1 if anything failed. It stops after the first batch with a failure,
unless --keep-going.

    python3 scripts/fuzz_live.py [--inputs 100000] [--seconds 1200] [--seed 1]
                                 [--batch 2000] [--concurrency 64] [--json FILE]

Run as root (fingerd drops to nobody). Loopback only; bounded in inputs and in
time (no new input after --seconds; every connection in flight ends within
its deadline); the daemon is ended by its pid.
"""

import argparse
import collections
import errno
import json
import os
import random
import selectors
import socket
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench import STATUS, USER, Fingerd  # noqa: E402
from bench_scale import rss_mib  # noqa: E402

from fingerd.finger.answer import FORWARD_DENIED, LIST_DENIED, NO_SUCH_USER  # noqa: E402
from fingerd.serving.service import BUSY, INTERNAL_ERROR  # noqa: E402

FINGER, SETTER, SETTER_UNIX, METRICS, WEB = "finger", "setter", "setter-unix", "metrics", "web"
PORTS = (FINGER, SETTER, SETTER_UNIX, METRICS, WEB)
#: How inputs are shared out among the ports.
WEIGHTS = (45, 15, 8, 12, 20)
#: The daemon's request_timeout: a request never completed is closed after it.
REQUEST_TIMEOUT = 2.0
#: Seconds beyond request_timeout within which the daemon must have closed a connection.
CLOSE_MARGIN = 8.0
#: Source addresses of the TCP clients, in turn.
SOURCES = [f"127.0.0.{n}" for n in range(1, 9)]
#: Most bytes of an answer kept for sorting it.
MAX_REPLY = 128 * 1024

#: A user the fuzzing never names, whose status an honest client reads; and one whose
#: status honest clients set and read back.
KNOWN, KNOWN_STATUS = b"carol", b"Reading RFC 1288"
SET_BY_CHECKS = b"dave"

SEEDS = {
    FINGER: [b"alice\r\n", b"bob\r\n", b"\r\n", b"/W\r\n", b"/W alice\r\n", b"/w  bob \r\n",
             b"alice@localhost\r\n", b"@localhost\r\n", b"@a@b@c\r\n", b"nosuchuser\r\n",
             b"alice\n", b"/W bob@example.org\r\n"],
    SETTER: [b"alice\r\nOut to lunch\r\n", b"bob\nBack at 3\n", b"alice\r\n\r\n",
             b"nosuch\r\nx\r\n", b"alice\r\n" + "Grüße ☕".encode() + b"\r\n"],
    METRICS: [b"GET /metrics HTTP/1.0\r\n\r\n",
              b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
              b"GET / HTTP/1.0\r\n\r\n", b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
              b"GET /metrics?name[]=x HTTP/1.0\n\n", b"HEAD /metrics HTTP/1.0\r\n\r\n"],
    WEB: [b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
          b"GET /users/alice HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n",
          b"GET /api/users/alice HTTP/1.0\r\n\r\n", b"GET /api/users HTTP/1.0\r\n\r\n",
          b'HEAD /users/bob HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/"1", *\r\n\r\n',
          b"GET /users?name=alice HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /style.css HTTP/1.0\n\n",
          b"GET /users/%61lice%00%2F.. HTTP/1.1\r\nHost: x\r\n\r\n",
          b"POST /users/alice HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
          b"GET http://127.0.0.1/api/users/bob?x#y HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"],
}
SEEDS[SETTER_UNIX] = SEEDS[SETTER]
ALL_SEEDS = [seed for port in PORTS for seed in SEEDS[port]]

UTF8_ODDITIES = [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf",
                 "\u2028".encode(), "\u2029".encode(), "\u202e".encode(), "\u200f".encode(),
                 "\u061c".encode(), b"\xef\xbf\xbe", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82",
                 b"\xff", b"\xfe", "é".encode(), "☕".encode(), b"\xc2\x85", b"\xc2\x9b",
                 b"\x1b[2J", b"\x7f"]
LINE_GAMES = [b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r\n", b"\r\n\r\n", b"\n\n", b"\x00",
              b"\r\x00\n", b"\x0b", b"\x0c", b"\x1c"]
VERBOSE = [b"/W ", b"/w ", b"/W\t", b"/W/W ", b"/ W ", b"/W", b"/Walice", b"//W ", b"/W  /W "]
#: Lengths at the limits: a query or setter line (1024), a request head (8192), and more.
HUGE = [1022, 1023, 1024, 1025, 1026, 4096, 8190, 8191, 8192, 8193, 8194, 65536]


def random_bytes(rng):
    roll = rng.random()
    if roll < 0.05:
        return b""
    if roll < 0.97:
        return rng.randbytes(rng.choice((rng.randint(1, 16), rng.randint(17, 300),
                                         rng.randint(300, 3000))))
    return rng.randbytes(rng.randint(3000, 65536))


def mutate(rng, data):
    """``data`` changed one to four times."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(data))
        op = rng.randrange(14)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and data:
            del data[at:at + rng.randint(1, 8)]
        elif op == 4:
            del data[at:]
        elif op == 5:
            data[at:at] = data[at:at + rng.randint(1, 16)] * rng.randint(2, 64)
        elif op == 6:
            data[at:at] = bytes([rng.choice(b"xA/@ \xff\x00")]) * rng.choice(HUGE)
        elif op == 7:
            data[at:at] = rng.choice(LINE_GAMES)
        elif op == 8:
            data[at:at] = b"\x00" * rng.randint(1, 3)
        elif op == 9:
            data[at:at] = rng.choice(UTF8_ODDITIES)
        elif op == 10:
            chain = rng.choice((b"@", b"@localhost", b"@a", b"@@"))
            data[at:at] = chain * rng.choice((1, 2, 3, 10, 100, 600))
        elif op == 11:
            data[0:0] = rng.choice(VERBOSE)
        elif op == 12:
            other = rng.choice(ALL_SEEDS)
            data[at:] = other[rng.randint(0, len(other)):]
        else:
            while data[-1:] in (b"\n", b"\r"):
                del data[-1:]
    return bytes(data)


#: What the web directory's paths are made of, for requests well formed but for them.
WEB_PATHS = [b"/users/", b"/api/users/", b"/users?name=", b"/", b"/api/users", b"/style.css",
             b"//", b"/users/../", b"/api/users/alice/", b"/users/alice?", b"*"]
WEB_PIECES = [b"alice", b"bob", b"%61lice", b"%00", b"%2F", b"%2e%2e", b"%", b"%zz", b"%c3%a9",
              b"%ed%a0%80", b"%e2%80%ae", b"%ff", b"+", b"&name=", b"#", b"..", b"/", b"<b>",
              b"\"", b"'", b";", b"x" * 40, b"%25"]


def web_request(rng):
    """A well-formed request for a generated path: the site's logic, not HTTP's."""
    target = rng.choice(WEB_PATHS) + b"".join(
        rng.choice(WEB_PIECES) for _ in range(rng.choice((0, 1, 2, 3, 8, 200))))
    method = rng.choice((b"GET", b"GET", b"HEAD", b"OPTIONS"))
    fields = rng.choice((b"", b"If-None-Match: *\r\n", b'If-None-Match: "x", W/"y"\r\n'))
    return method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n"


def next_input(rng, port):
    """An input for ``port``: ``(bytes, origin)``."""
    if rng.random() < 0.3:
        return random_bytes(rng), "random"
    if port == WEB and rng.random() < 0.4:
        return web_request(rng), "generated web path"
    return mutate(rng, rng.choice(SEEDS[port])), "mutated"


def complete(port, data):
    """Whether ``data`` holds a whole request for ``port``, so the daemon answers without
    waiting for more."""
    if port in (METRICS, WEB):
        return b"\n\n" in data or b"\n\r\n" in data
    return data.count(b"\n") >= (1 if port == FINGER else 2)


#: How an input is delivered, and how often.
MODES = (("whole", 40), ("halfclose", 30), ("pieces", 12), ("reset", 8), ("close", 5),
         ("silent", 5))


def delivery(rng, port, data):
    """``(mode, chunks to send, whether to half-close after them)``."""
    mode = rng.choices([m for m, _ in MODES], [w for _, w in MODES])[0]
    if mode == "whole" and not complete(port, data) and rng.random() < 0.98:
        # Mostly not left for request_timeout to end: that would only slow the run down.
        mode = "halfclose"
    if mode == "silent":
        # Closed at once, half-closed at once, or held until the daemon's timeout.
        mode = rng.choices(["silent, closed", "silent, half-closed", "silent, held"],
                           [50, 45, 5])[0]
        return mode, [], mode == "silent, half-closed"
    if mode == "pieces" and len(data) > 1:
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 5))))
        chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        return mode, chunks, not complete(port, data) or rng.random() < 0.5
    return mode, [data] if data else [], mode == "halfclose"


class Conn:
    __slots__ = ("sock", "port", "mode", "chunks", "data", "reply", "deadline", "state",
                 "shut_after")

    def __init__(self, sock, port, mode, chunks, data, deadline, shut_after):
        self.sock = sock
        self.port = port
        self.mode = mode
        self.chunks = chunks
        self.data = data
        self.reply = b""
        self.deadline = deadline
        self.state = "connecting"
        self.shut_after = shut_after


def control_bytes(reply):
    """Bytes below space other than TAB, CR and LF, and DEL, in a finger answer."""
    return sorted({b for b in reply if (b < 0x20 and b not in (9, 10, 13)) or b == 0x7F})


class Fuzzer:
    def __init__(self, daemon, unix_path, concurrency, seed):
        self.daemon = daemon
        self.unix_path = unix_path
        #: Which port the next input goes to depends on which have room, hence on timing;
        #: what the n-th input of each port is, and how it is sent, depends on the seed alone.
        self.rng = random.Random(seed)
        self.port_rngs = {port: random.Random(f"{seed}:{port}") for port in PORTS}
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.inflight = collections.Counter()
        self.limits = {FINGER: max(1, concurrency - 20), SETTER: 4, SETTER_UNIX: 3,
                       METRICS: 5, WEB: 8}
        self.sent = collections.Counter()
        self.origins = collections.Counter()
        self.modes = collections.Counter()
        self.kinds = {port: collections.Counter() for port in PORTS}
        #: What went wrong, by kind, and the first failures in full.
        self.errors = collections.Counter()
        self.failures = []
        #: What happened that is no failure, such as a send the daemon cut off.
        self.events = collections.Counter()
        self._source = 0

    def fail(self, kind, message):
        self.errors[kind] += 1
        if len(self.failures) < 50:
            self.failures.append(message)

    # Launching.

    def send_one(self, deadline):
        """Start the next input of a port that has room (chosen by WEIGHTS among those);
        False when none has had room until ``deadline``."""
        while True:
            room = [i for i, port in enumerate(PORTS) if self.inflight[port] < self.limits[port]]
            if room:
                break
            if time.monotonic() > deadline:
                return False
            self.turn(0.5)
        port = PORTS[self.rng.choices(room, [WEIGHTS[i] for i in room])[0]]
        rng = self.port_rngs[port]
        data, origin = next_input(rng, port)
        mode, chunks, shut_after = delivery(rng, port, data)
        self.sent[port] += 1
        self.origins[origin] += 1
        self.modes[mode] += 1
        try:
            sock = self._connect(port)
        except OSError as exc:
            self.fail("cannot connect", f"{port}: cannot connect: {exc}")
            return True
        conn = Conn(sock, port, mode, chunks, data,
                    time.monotonic() + REQUEST_TIMEOUT + CLOSE_MARGIN, shut_after)
        self.conns[sock.fileno()] = conn
        self.inflight[port] += 1
        if port == SETTER_UNIX:
            conn.state = "sending"
        self.sel.register(sock, selectors.EVENT_WRITE, conn)
        return True

    def _connect(self, port):
        if port == SETTER_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(self.unix_path)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            return sock
        number = {FINGER: self.daemon.finger_port, SETTER: self.daemon.setter_port,
                  METRICS: self.daemon.metrics_port, WEB: self.daemon.web_port}[port]
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._source = (self._source + 1) % len(SOURCES)
        try:
            sock.bind((SOURCES[self._source], 0))
            err = sock.connect_ex(("127.0.0.1", number))
        except OSError:
            sock.close()
            raise
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        return sock

    # The event loop.

    def turn(self, timeout):
        for key, mask in self.sel.select(timeout):
            conn = key.data
            if conn.sock.fileno() in self.conns:
                self.advance(conn, mask)
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if c.deadline < now]:
            self.fail("not closed by the daemon in time",
                      f"{conn.port}: the daemon did not close the connection within "
                      f"{REQUEST_TIMEOUT + CLOSE_MARGIN:.0f} s ({conn.mode}, state {conn.state}, "
                      f"input {conn.data[:60]!r}, {len(conn.data)} bytes)")
            self.end(conn)

    def drain(self, limit):
        """Wait until nothing is in flight, or ``limit`` seconds (every connection has its
        own deadline, so this ends)."""
        until = time.monotonic() + limit
        while self.conns and time.monotonic() < until:
            self.turn(0.2)

    def end(self, conn, kind=None, client=None):
        if kind is not None:
            self.kinds[conn.port][kind] += 1
        if client is not None:
            self.kinds[conn.port][client] += 1
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        del self.conns[conn.sock.fileno()]
        self.inflight[conn.port] -= 1
        conn.sock.close()

    def advance(self, conn, mask):
        if conn.state == "connecting":
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail("cannot connect", f"{conn.port}: connect failed: {os.strerror(err)}")
                self.end(conn)
                return
            conn.state = "sending"
        if conn.state == "sending":
            self.send(conn)
        elif conn.state == "reading":
            self.read(conn)

    def send(self, conn):
        try:
            while conn.chunks:
                chunk = conn.chunks[0]
                n = conn.sock.send(chunk)
                if n < len(chunk):
                    conn.chunks[0] = chunk[n:]
                    return
                conn.chunks.pop(0)
                if conn.mode == "pieces" and conn.chunks:
                    return  # the next piece on a later turn, as a segment of its own
        except BlockingIOError:
            return
        except OSError:
            # The daemon closed before taking it all (a line too long): read what it said.
            self.events["sends cut off by the daemon"] += 1
            self.to_reading(conn)
            return
        if conn.mode == "reset":
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.end(conn, client="client reset after sending")
            return
        if conn.mode in ("close", "silent, closed"):
            self.end(conn, client="client closed without reading")
            return
        if conn.shut_after:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.to_reading(conn)

    def to_reading(self, conn):
        conn.state = "reading"
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def read(self, conn):
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.answered(conn, reset=True)
            return
        except OSError as exc:
            self.fail("read failed", f"{conn.port}: read failed: {exc}")
            self.end(conn)
            return
        if chunk:
            if len(conn.reply) < MAX_REPLY:
                conn.reply += chunk
            return
        self.answered(conn, reset=False)

    # Sorting answers.

    def answered(self, conn, reset):
        reply = conn.reply
        if not reply:
            self.end(conn, "reset by the daemon, nothing answered" if reset
                     else "closed unanswered")
            return
        kind = {FINGER: self.finger_kind, METRICS: self.http_kind, WEB: self.http_kind}.get(
            conn.port, self.setter_kind)(conn, reply, reset)
        self.end(conn, kind + (" (then reset)" if reset else ""))

    def bad(self, conn, what, reply):
        self.fail(f"{conn.port}: {what}",
                  f"{conn.port}: {what}: answer {reply[:80]!r} to input {conn.data[:80]!r} "
                  f"({len(conn.data)} bytes, {conn.mode})")
        return "FAILURE: " + what

    def finger_kind(self, conn, reply, reset):
        if reply == BUSY:
            return "busy"
        if reply.startswith(INTERNAL_ERROR.data):
            return self.bad(conn, "internal error", reply)
        if control_bytes(reply):
            return self.bad(conn, f"control bytes {control_bytes(reply)}", reply)
        bare = reply.replace(b"\r\n", b"")
        if not reset and (not reply.endswith(b"\r\n") or b"\n" in bare or b"\r" in bare):
            return self.bad(conn, "lines not ended by CRLF", reply)
        first = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        if first in (NO_SUCH_USER, LIST_DENIED, FORWARD_DENIED):
            return first
        if first.startswith("Login: "):
            return "verbose answer"
        return "status or list"

    def setter_kind(self, conn, reply, reset):
        if reply == BUSY:
            return "busy"
        if reply == b"OK\r\n":
            return "OK"
        if reply.startswith(b"ERROR ") and reply.endswith(b"\r\n") and reply.count(b"\n") == 1:
            return reply[:-2].decode("utf-8", "replace")[:60]
        return self.bad(conn, "not a setter answer", reply)

    def http_kind(self, conn, reply, reset):
        """The status of an HTTP answer: the metrics endpoint's HTTP/1.0, the web's 1.1."""
        head, blank, body = reply.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        version = b"HTTP/1.0 " if conn.port == METRICS else b"HTTP/1.1 "
        if not status.startswith(version) or not blank:
            return self.bad(conn, "not an HTTP answer", reply)
        if status[9:12] == b"500":
            return self.bad(conn, "internal error", reply)
        length = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Length: ")]
        # A HEAD request is answered the head alone, a 304 no length.
        if not reset and len(reply) < MAX_REPLY and body and (
                not length or int(length[0].split(b" ")[1]) != len(body)):
            return self.bad(conn, "Content-Length is not the body's", reply)
        return "HTTP " + status[9:].decode("ascii", "replace")


def exchange(connect, data, timeout=10.0):
    """An honest client: send ``data``, read to EOF."""
    with connect() as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    raise TimeoutError("no end of answer")


class Checks:
    """The honest clients, and what they found."""

    def __init__(self, daemon, unix_path, rng):
        self.daemon = daemon
        self.unix_path = unix_path
        self.rng = rng
        self.passed = 0
        self.failed = 0
        self.busy_retries = 0

    def tcp(self, port):
        return lambda: socket.create_connection(("127.0.0.1", port), timeout=10)

    def unix(self):
        def connect():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(self.unix_path)
            return sock
        return connect

    def ask(self, connect, data, expected, what, failures):
        """One honest request; a busy answer is asked again, a few times. ``expected`` is
        the answer, or a function that says whether an answer is right."""
        for _ in range(5):
            try:
                reply = exchange(connect, data)
            except OSError as exc:
                reply = f"<{exc}>".encode()
            if reply != BUSY and not reply.startswith(b"HTTP/1.1 503 "):
                break
            self.busy_retries += 1
            time.sleep(0.2)
        if reply == expected or (callable(expected) and expected(reply)):
            self.passed += 1
            return True
        self.failed += 1
        failures.append(f"check {what}: expected {getattr(expected, '__doc__', expected)!r}, "
                        f"got {reply[:120]!r}")
        return False

    def run(self, batch):
        failures = []
        finger = self.tcp(self.daemon.finger_port)
        self.ask(finger, KNOWN + b"\r\n", KNOWN_STATUS + b"\r\n", "a known user's status",
                 failures)
        self.ask(finger, b"nobody-%d\r\n" % self.rng.randrange(10 ** 9), b"No such user\r\n",
                 "an unknown user", failures)
        status = b"checked after batch %d, %08x" % (batch, self.rng.randrange(2 ** 32))
        setter, how = ((self.tcp(self.daemon.setter_port), "TCP") if batch % 2
                       else (self.unix(), "Unix socket"))
        if self.ask(setter, SET_BY_CHECKS + b"\r\n" + status + b"\r\n", b"OK\r\n",
                    f"a set on the setter's {how}", failures):
            self.ask(finger, SET_BY_CHECKS + b"\r\n", status + b"\r\n",
                     "the status just set, read back", failures)

        def known_json(reply):
            """200 and the known user's JSON"""
            head, _, body = reply.partition(b"\r\n\r\n")
            try:
                value = json.loads(body)
            except ValueError:
                return False
            return head.startswith(b"HTTP/1.1 200 OK\r\n") and value == {
                "user": KNOWN.decode(), "found": True,
                "answer": f"Login: {KNOWN.decode()}\nStatus: {KNOWN_STATUS.decode()}"}
        self.ask(self.tcp(self.daemon.web_port),
                 b"GET /api/users/" + KNOWN + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                 known_json, "a known user's JSON on the web directory", failures)
        return failures


def log_problems(path, offset):
    """Lines of the daemon's log from ``offset`` that tell of a bug; and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return [], offset
    found = [line.decode("utf-8", "replace") for line in text.splitlines()
             if b"Traceback" in line or b"internal error" in line]
    return found, offset + len(text)


def write_users(path):
    with open(path, "wb") as f:
        f.write(USER + b":" + STATUS + b"\n")
        f.write(KNOWN + b":" + KNOWN_STATUS + b"\n")
        f.write(SET_BY_CHECKS + b":not set yet\n")
        f.write(b"bob:Sleeping\n# a comment the setter keeps\n")


def run(args):
    failures = []
    with tempfile.TemporaryDirectory(prefix="fingerd-fuzz-") as directory:
        os.chmod(directory, 0o755)
        unix_path = os.path.join(directory, "setter.sock")
        daemon = Fingerd("fingerd", directory, setter={"socket": unix_path},
                         finger={"list_users": "yes"}, max_connections="256",
                         request_timeout=str(REQUEST_TIMEOUT), threads="8")
        write_users(daemon.users)
        daemon.start()
        try:
            return fuzz(args, daemon, unix_path, failures)
        finally:
            daemon.stop()


def fuzz(args, daemon, unix_path, failures):
    worker = daemon.worker_pid()
    if worker == daemon.proc.pid:
        failures.append("the daemon has no worker")
    rss_start = rss_max = rss_mib(worker)
    fuzzer = Fuzzer(daemon, unix_path, args.concurrency, args.seed)
    checks = Checks(daemon, unix_path, random.Random(f"{args.seed}:checks"))
    log_offset = 0
    started = time.monotonic()
    deadline = started + args.seconds
    batches = 0
    restarts = None
    sent = 0
    while sent < args.inputs and time.monotonic() < deadline:
        batch_end = min(args.inputs, sent + args.batch)
        while sent < batch_end and time.monotonic() < deadline and fuzzer.send_one(deadline):
            sent += 1
            fuzzer.turn(0)
        fuzzer.drain(REQUEST_TIMEOUT + CLOSE_MARGIN + 5)
        batches += 1
        problems = checks.run(batches)
        if daemon.proc.poll() is not None:
            problems.append(f"the daemon exited with status {daemon.proc.returncode}")
        now_worker = daemon.worker_pid()
        if now_worker != worker:
            problems.append(f"the worker changed: pid {worker}, now {now_worker}")
        restarts = daemon.metrics().get("fingerd_worker_restarts_total")
        if restarts != 0:
            problems.append(f"fingerd_worker_restarts_total is {restarts}")
        rss = rss_mib(now_worker)
        rss_max = max(rss_max, rss)
        if rss > rss_start + args.max_rss_growth:
            problems.append(f"the worker's RSS grew from {rss_start:.1f} to {rss:.1f} MiB")
        logged, log_offset = log_problems(daemon.log_file, log_offset)
        problems += [f"daemon log: {line}" for line in logged[:5]]
        failures += [f"after batch {batches} ({sent} inputs): {p}" for p in problems]
        print(f"batch {batches}: {sent} inputs, {time.monotonic() - started:.0f} s, worker RSS "
              f"{rss:.1f} MiB, {sum(fuzzer.errors.values())} errors, "
              f"{'checks passed' if not problems else 'FAILED: ' + problems[0]}",
              file=sys.stderr, flush=True)
        if (problems or fuzzer.errors) and not args.keep_going:
            break
    duration = time.monotonic() - started
    prefix = "fingerd_connections_rejected_total{"
    rejected = {name[len(prefix):-1]: value for name, value in daemon.metrics().items()
                if name.startswith(prefix)}
    summary = {
        "seed": args.seed, "inputs": sent, "seconds": round(duration, 1),
        "inputs_per_second": round(sent / duration) if duration else 0, "batches": batches,
        "inputs_by_port": {port: fuzzer.sent[port] for port in PORTS},
        "inputs_by_origin": dict(fuzzer.origins), "inputs_by_delivery": dict(fuzzer.modes),
        "answers_by_kind": {port: dict(fuzzer.kinds[port].most_common()) for port in PORTS},
        "connections_rejected_by_reason": rejected,
        "errors": dict(fuzzer.errors), "events": dict(fuzzer.events),
        "checks": {"passed": checks.passed, "failed": checks.failed,
                   "busy_retries": checks.busy_retries},
        "worker": {"pid_unchanged": daemon.worker_pid() == worker, "restarts": restarts,
                   "rss_mib": {"start": round(rss_start, 1), "max": round(rss_max, 1),
                               "end": round(rss_mib(daemon.worker_pid()), 1)}},
        "users_file_entries": count_entries(daemon.users),
        "failures": fuzzer.failures + failures[:50],
        "ok": not fuzzer.errors and not failures,
    }
    return summary


def count_entries(path):
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip() and not line.startswith(b"#"))


def report(summary):
    print(f"fuzz_live: seed {summary['seed']}: {summary['inputs']} inputs in "
          f"{summary['seconds']} s ({summary['inputs_per_second']}/s), "
          f"{summary['batches']} batches")
    print("inputs by port: " + ", ".join(f"{p} {n}" for p, n in
                                         summary["inputs_by_port"].items()))
    print("inputs by origin: " + ", ".join(f"{k} {n}" for k, n in
                                           summary["inputs_by_origin"].items()))
    print("inputs by delivery: " + ", ".join(f"{k} {n}" for k, n in
                                             summary["inputs_by_delivery"].items()))
    for port, kinds in summary["answers_by_kind"].items():
        print(f"answers on {port}:")
        for kind, n in kinds.items():
            print(f"  {n:7d}  {kind}")
    print("connections the daemon rejected, by reason: " + (", ".join(
        f"{k} {v:.0f}" for k, v in summary["connections_rejected_by_reason"].items()) or "none"))
    print("events: " + (", ".join(f"{k} {n}" for k, n in summary["events"].items()) or "none"))
    print("errors: " + (", ".join(f"{k} {n}" for k, n in summary["errors"].items()) or "none"))
    checks = summary["checks"]
    print(f"honest checks: {checks['passed']} passed, {checks['failed']} failed "
          f"({checks['busy_retries']} asked again after a busy answer)")
    worker = summary["worker"]
    rss = worker["rss_mib"]
    print(f"worker: pid {'unchanged' if worker['pid_unchanged'] else 'CHANGED'}, "
          f"fingerd_worker_restarts_total {worker['restarts']}; RSS MiB start {rss['start']}, "
          f"max {rss['max']}, end {rss['end']}")
    print(f"users file: {summary['users_file_entries']} entries at the end")
    for failure in summary["failures"]:
        print(f"FAILURE: {failure}")
    print("result: " + ("OK" if summary["ok"] else "FAILED"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100000, help="inputs to send in all")
    parser.add_argument("--seconds", type=float, default=1200,
                        help="send no new input after this many seconds")
    parser.add_argument("--seed", type=int, default=1, help="seed of the inputs")
    parser.add_argument("--batch", type=int, default=2000,
                        help="inputs between two rounds of checks")
    parser.add_argument("--concurrency", type=int, default=64, help="connections in flight")
    parser.add_argument("--max-rss-growth", type=float, default=64,
                        help="MiB the worker's RSS may grow by")
    parser.add_argument("--keep-going", action="store_true",
                        help="go on after a batch with a failure")
    parser.add_argument("--json", help="write the summary to this file as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("fuzz_live.py: run as root: fingerd starts as root and drops to nobody")
    summary = run(args)
    report(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
