"""The least a Python finger server does a query, for scripts/bench.py and
scripts/instructions.py: the floor for fingerd's own Python.

One thread on epoll, fingerd's system calls and nothing else: the listener's
private ``_accept``, the C socket type, TCP_DEFER_ACCEPT, ``recv`` with
MSG_DONTWAIT, ``send`` with MSG_MORE, ``close``. A query is read up to its LF,
looked up in a dict and answered. It checks nothing else and is not a server to
run.

    python3 python_floor.py PORT USERS_FILE
"""

import select
import socket
import sys
from _socket import socket as raw_socket

from users import read_users

NO_SUCH_USER = b"No such user\r\n"


def serve(port: int, answers: dict) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    accept, listening = listener._accept, listener.fileno()  # type: ignore[attr-defined]
    epoll = select.epoll()
    epoll.register(listening, select.EPOLLIN)
    waiting: dict = {}
    flags = socket.MSG_DONTWAIT | socket.MSG_MORE
    while True:
        for fd, _events in epoll.poll():
            if fd == listening:
                try:
                    fd, _peer = accept()
                except BlockingIOError:
                    continue
                sock, buf = raw_socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd), b""
            else:
                epoll.unregister(fd)
                sock, buf = waiting.pop(fd)
            try:
                chunk = sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                chunk = None
            if chunk == b"":  # the client left without a whole query
                sock.close()
                continue
            buf += chunk or b""
            if b"\n" not in buf:
                waiting[fd] = sock, buf
                epoll.register(fd, select.EPOLLIN)
                continue
            user = buf.split(b"\n", 1)[0].rstrip(b"\r")
            sock.send(answers.get(user, NO_SUCH_USER), flags)
            sock.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), {name: status + b"\r\n"
                             for name, status in read_users(sys.argv[2]).items()})
