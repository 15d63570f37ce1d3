"""Debian's in.fingerd (netkit), run for one query as inetd runs it: on the accepted
connection, as nobody."""

import os
import socket
import subprocess
import threading

import pytest

#: Longest one in.fingerd run may take.
SECONDS = 20
#: Most bytes of an answer read.
MAX_ANSWER = 1024 * 1024


def path():
    """Where in.fingerd is installed; the test fails when it is not."""
    for candidate in ("/usr/sbin/in.fingerd", "/usr/bin/in.fingerd"):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("in.fingerd is not installed")


def ask(query):
    """What in.fingerd answers to the query line ``query`` (bytes, line end included),
    from a connection on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def launch_one():
            conn, _ = listener.accept()
            with conn:
                subprocess.run([path()], stdin=conn.fileno(), stdout=conn.fileno(),
                               stderr=subprocess.DEVNULL, user="nobody", timeout=SECONDS)

        launcher = threading.Thread(target=launch_one, daemon=True)
        launcher.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=SECONDS) as client:
                client.sendall(query)
                answer = b""
                while len(answer) < MAX_ANSWER:
                    data = client.recv(65536)
                    if not data:
                        break
                    answer += data
                return answer
        finally:
            launcher.join(SECONDS + 10)
