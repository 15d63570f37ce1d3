"""The setter's account lookups (the login and admin rights of the uid the kernel names),
behind an account database that hangs: waited for a bounded time, never for good."""

import pwd
import threading
import time

import pytest

from fingerd.finger.bounded import Unfinished
from fingerd.serving.setter import Requesters, SetterClient, SetterHandler, SetterNeeds
from fingerd.users.setter_request import Requester
from tests.support.polling import wait_until


class HungLookups:
    """pwd.getpwuid that answers uid 1000 as alice at once and hangs on any other uid
    until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.stuck = 0

    def __call__(self, uid):
        if uid == 1000:
            return pwd.struct_passwd(("alice", "x", 1000, 1000, "", "/", "/bin/sh"))
        self.stuck += 1
        self.release.wait(30)
        raise KeyError(uid)


@pytest.fixture
def hung(monkeypatch):
    lookups = HungLookups()
    monkeypatch.setattr(pwd, "getpwuid", lookups)
    yield lookups
    lookups.release.set()


def test_a_lookup_that_hangs_is_given_up_at_its_deadline(hung):
    requesters = Requesters(timeout=0.3)
    assert requesters.of(1000) == Requester(1000, "alice")
    began = time.monotonic()
    with pytest.raises(Unfinished):
        requesters.of(2000)
    assert time.monotonic() - began < 10


def test_with_lookups_hung_a_set_is_answered_error_within_its_deadline(hung):
    requesters = Requesters(timeout=0.3)
    for _ in range(Requesters.LOOKUPS):
        with pytest.raises(Unfinished):
            requesters.of(2000)
    wait_until(lambda: hung.stuck == Requesters.LOOKUPS, what="the lookups hung")
    handler = SetterHandler([b"alice", b"Gone"], SetterClient("127.0.0.1", 40000, 3000),
                            SetterNeeds(store=None, requesters=requesters))
    assert handler.answer.data == b"ERROR account lookup failed\r\n"
    assert hung.stuck == Requesters.LOOKUPS, "no lookup was started for it"
