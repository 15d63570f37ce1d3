"""A finger server on uvloop (libuv under asyncio's protocol API): a line read, looked up
in a dict and answered, the connection closed. A benchmark baseline.

    python3 uvloop_finger.py PORT USERS_FILE
"""

import asyncio
import sys
from typing import cast

import uvloop
from users import read_users


class FingerProtocol(asyncio.Protocol):
    def __init__(self, users: dict) -> None:
        self.users = users
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer:
            user = self.buffer.split(b"\n", 1)[0].rstrip(b"\r")
            self.transport.write(self.users.get(user, b"No such user") + b"\r\n")
            self.transport.close()


async def serve(port: int, users: dict) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FingerProtocol(users), "127.0.0.1", port,
                                      backlog=1024)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), read_users(sys.argv[2])))
