"""How many of fingerd's modules one status set crosses, in its three processes: a
newcomer follows a set through the code module by module (docs/design.md walks it).

A real daemon, as root, runs with every call of its own functions recorded in
the root parent, the worker and the users file writer child
(tests/support/traced_fingerd.py), each call with its caller. Three sets are
recorded, each from the moment it is sent until the parent has written its
log line. A call made as well while nothing was set (a heartbeat, the users
file watcher) is not the set's; a module is on the path when, for each of
the three sets, one of its functions made or received a call of the set's.
Three more sets send their lines only once the worker waits for them, as a
client on a busy machine may, and show what waiting adds to the path.
"""

import os
import socket
import sys

from tests.support.markers import needs_root
from tests.support.net import answer_of
from tests.support.polling import wait_until

#: The modules a set crosses today, in the worker (the serving loop, the setter's share
#: and framing, its service, the kernel's word on the client's account, the bound on the
#: lookup of that account, the pool, the request and the users file's grammar, the store,
#: its table and the snapshot kept for the next worker, the channel to the parent), in the
#: root parent (its loop, the monitor, the file writer and the writer child's handle, the
#: escaping of the client the log line names, the handler that writes the line) and in
#: the writer child (its loop, the edit of the file, the durable write).
PATH = {
    "fingerd.serving.loop", "fingerd.serving.gate", "fingerd.serving.lines",
    "fingerd.serving.setter", "fingerd.serving.peer_owner", "fingerd.serving.pool",
    "fingerd.finger.bounded",
    "fingerd.users.setter_request", "fingerd.users.usersfile", "fingerd.users.store",
    "fingerd.users.table", "fingerd.users.snapshot", "fingerd.process.channel",
    "fingerd.process.parent.supervisor", "fingerd.process.parent.monitor",
    "fingerd.process.parent.filewriter", "fingerd.process.parent.writer_handle",
    "fingerd.process.logformat", "fingerd.loghandlers",
    "fingerd.process.writer.child", "fingerd.users.editing", "fingerd.users.fileio",
}
#: What a set whose lines come after the worker accepted its connection crosses as
#: well: it waits among the pending connections, and each turn of the loop asks the
#: listeners whether a pause has ended.
WAITING = {"fingerd.serving.pending", "fingerd.serving.listening"}
#: Flag values: each recorded set's, sent at once and sent late, and the two windows
#: in which nothing is set, each ended by a heartbeat, so that the second spans a
#: whole second.
SETS = (1, 2, 3)
LATE_SETS = (4, 5, 6)
IDLE = (9, 10)
#: Sets made before recording: the pool threads' first tallies and the writer child's
#: first fork are behind them.
WARM_SETS = 8


class Calls:
    """The recorder's flag and what it wrote."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "calls")
        self.flag = os.path.join(directory, "flag")
        with open(self.path, "wb"), open(self.flag, "wb") as flag:
            flag.write(b"\0")
        # The worker (nobody) and the writer child close the descriptors they did not
        # open themselves, and open the file again.
        os.chmod(self.path, 0o666)

    def wrapper(self):
        return [sys.executable, "-m", "tests.support.traced_fingerd", self.path, self.flag]

    def record(self, epoch):
        """From now on, record calls under ``epoch`` (0: record nothing)."""
        fd = os.open(self.flag, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([epoch]), 0)
        finally:
            os.close(fd)

    def of(self, epoch):
        """``(pid, thread, module, function, caller)`` of each call recorded under
        ``epoch``."""
        with open(self.path) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
        return {tuple(row[1:]) for row in rows if row[0] == str(epoch)}


def modules_of(calls):
    """The modules of the functions called and of their fingerd callers: the parent's
    loop, for one, runs while nothing is set too, but calls the writer's report only
    for a set."""
    called = {module for _pid, _thread, module, _function, _caller in calls}
    calling = {caller.rpartition(".")[0] for *_, caller in calls}
    return called | {module for module in calling if module.startswith("fingerd.")}


@needs_root
def test_a_set_crosses_the_modules_design_md_walks(make_daemon):
    daemon = make_daemon()
    calls = Calls(daemon.dir)
    daemon.start(wrapper=calls.wrapper())
    sets = 0

    def waited(epoch):
        return any(call[2:4] == ("fingerd.serving.pending", "watch")
                   for call in calls.of(epoch))

    def set_status(status, late_in=0):
        """Set alice's status; ``late_in``, a flag value, sends the lines only once
        the worker waits for them under it."""
        nonlocal sets
        request = b"alice\r\n" + status + b"\r\n"
        if late_in:
            with socket.create_connection(("127.0.0.1", daemon.setter_port), 10) as s:
                wait_until(lambda: waited(late_in), what="the worker to wait for the lines")
                s.sendall(request)
                assert answer_of(s) == b"OK\r\n"
        else:
            assert daemon.setter(request) == b"OK\r\n"
        sets += 1
        wait_until(lambda: daemon.log().count("set the status of alice") == sets,
                   what="the set's log line")

    # Before any set, so that nothing a set leaves behind (the writer child let go a
    # second after it) is taken for what goes on anyway.
    for epoch in IDLE:
        calls.record(epoch)
        wait_until(lambda: {"_on_alive", "reload"} <= {call[3] for call in calls.of(epoch)},
                   what="a heartbeat and a look at the users file while nothing is set")
    calls.record(0)
    idle = set.union(*map(calls.of, IDLE))
    for n in range(WARM_SETS):
        set_status(b"warming up %d" % n)

    def crossed(epochs, late):
        paths = []
        for epoch in epochs:
            calls.record(epoch)
            set_status(b"Gone fishing %d" % epoch, epoch if late else 0)
            wait_until(lambda: any(call[3] == "hand_back" for call in calls.of(epoch)),
                       what="the set's slot to be handed back")
            calls.record(0)
            path = modules_of(calls.of(epoch) - idle)
            # Sent at once, its lines may still come after the accept on a busy machine:
            # what that adds is shown by the sets sent late.
            paths.append(path - WAITING if not late and waited(epoch) else path)
        return set.intersection(*paths)

    at_once, late = crossed(SETS, False), crossed(LATE_SETS, True)
    assert at_once == PATH, (f"new on the path: {sorted(at_once - PATH)}; "
                             f"no longer on it: {sorted(PATH - at_once)}")
    assert late == PATH | WAITING, f"a set sent late crosses {sorted(late - PATH)} besides the path"
