"""Real Redis and HAProxy processes for tests, on loopback, each ended by its pid."""

import os
import re
import shutil
import socket
import subprocess

from tests.support import ROOT
from tests.support.polling import wait_until


def _binary(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def _ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            # A Redis that asks for a password answers NOAUTH: up all the same.
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with its data in ``directory``; ``stop`` and
    ``start`` again keep the port, as a restarted Redis would."""

    def __init__(self, directory, port, *options):
        self.dir = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._options = options
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log"), *self._options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._running() and _ping(self.port), what="redis-server")
        return self

    def _running(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                raise AssertionError(f"redis-server exited:\n{f.read()}")
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class HAProxy:
    """``haproxy`` run from the shipped example ``init/haproxy-fingerd.cfg``, listening on
    127.0.0.1:``port`` and balancing over fingerd finger ports ``servers`` on loopback;
    its checks run every ``inter`` and one failure takes a server out."""

    EXAMPLE = os.path.join(ROOT, "init", "haproxy-fingerd.cfg")

    def __init__(self, directory, port, servers, inter="100ms"):
        self.port = port
        self.config = os.path.join(directory, "haproxy.cfg")
        with open(self.EXAMPLE) as f:
            text = f.read()
        text = re.sub(r"(?m)^    server .*\n", "", text)
        text = re.sub(r"(?m)^    bind :79$", f"    bind 127.0.0.1:{port}", text)
        text = text.replace("check inter 2s fall 2", f"check inter {inter} fall 1")
        text += "".join(f"    server fingerd{i} 127.0.0.1:{p}\n" for i, p in enumerate(servers))
        with open(self.config, "w") as f:
            f.write(text)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([_binary("haproxy"), "-db", "-f", self.config],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening():
            assert self.proc.poll() is None, "haproxy exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, what="HAProxy listening")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
