"""The Twisted finger tutorial's server, as its early chapters build it: a dict of
users, a LineReceiver that answers one line and closes. A benchmark baseline.

    python3 twisted_finger.py PORT USERS_FILE
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic
from users import read_users


class FingerProtocol(basic.LineReceiver):
    def lineReceived(self, user):
        self.transport.write(self.factory.getUser(user) + b"\r\n")
        self.transport.loseConnection()


class FingerFactory(protocol.ServerFactory):
    protocol = FingerProtocol

    def __init__(self, users):
        self.users = users

    def getUser(self, user):
        return self.users.get(user, b"No such user")


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), FingerFactory(read_users(sys.argv[2])), backlog=1024,
                      interface="127.0.0.1")
    reactor.run()
