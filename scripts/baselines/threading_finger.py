"""The design taken literally: socketserver.ThreadingTCPServer, one thread a connection.
A benchmark baseline.

    python3 threading_finger.py PORT USERS_FILE
"""

import socketserver
import sys

from users import read_users


class FingerHandler(socketserver.StreamRequestHandler):
    def handle(self):
        user = self.rfile.readline(1026).rstrip(b"\r\n")
        self.wfile.write(self.server.users.get(user, b"No such user") + b"\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), FingerHandler)
    server.users = read_users(sys.argv[2])
    server.serve_forever()
