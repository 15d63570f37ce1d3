"""A real parent (``Supervisor.run``, its signals and its selector) whose workers run a
body named on the command line instead of fingerd's, to see what a worker that does
not behave can do to the parent:

    python3 -m tests.support.hostile_parent BODY DIRECTORY [WRITE_DELAY [WRITE_STOP_WAIT]]

The parent logs to DIRECTORY/parent.log and writes DIRECTORY/users on the workers'
behalf; each write waits WRITE_DELAY seconds once its new file is on disk, before the
rename (in the writing child, which inherits the patch). The first worker runs BODY;
workers started after it behave. Every body says it is ready first (a first worker
killed before that fails the start) and ends when the parent is gone, within seconds,
whatever it does.
"""

import json
import os
import select
import signal
import sys
import time
from types import SimpleNamespace

from fingerd import logsetup
from fingerd.process.channel import MonitorClient, channel
from fingerd.process.exits_and_signals import HANDLED_SIGNALS
from fingerd.process.parent import supervisor
from fingerd.process.parent.forking import ForkedWorkers
from fingerd.users import fileio

#: No body outlives this many seconds, nor its parent.
LIFETIME = 60.0


def set_request(n, name="alice"):
    return json.dumps({"op": "set", "id": n, "name": name, "status": f"status {n}",
                       "by": "127.0.0.1 (uid 0, root)",
                       "deadline": time.monotonic() + LIFETIME}).encode()


def parent_alive(parent):
    return os.getppid() == parent


def idle(sock, parent):
    """Read and drop whatever the parent sends until it is gone or closes the channel."""
    end = time.monotonic() + LIFETIME
    while parent_alive(parent) and time.monotonic() < end:
        if select.select([sock], [], [], 0.2)[0] and not sock.recv(65536):
            return


def flood_sets(sock, parent):
    """Valid set requests as fast as the socket takes them, no reply read."""
    end = time.monotonic() + LIFETIME
    n = 0
    while parent_alive(parent) and time.monotonic() < end:
        sock.send(set_request(n))
        n += 1


def no_read(sock, parent):
    """Refused set requests (an invalid name), each answered at once, no reply read."""
    end = time.monotonic() + LIFETIME
    n = 0
    while parent_alive(parent) and time.monotonic() < end:
        sock.send(set_request(n, name="-invalid"))
        n += 1


def busy(sock, parent):
    """Refused set requests without pause, every reply read: busy, but not hostile."""
    end = time.monotonic() + LIFETIME
    n = 0
    while parent_alive(parent) and time.monotonic() < end:
        sock.send(set_request(n, name="-invalid"))
        sock.recv(65536)
        n += 1


def one_set(sock, parent):
    """One honest set, as the real worker asks for it; its answer in DIRECTORY/reply."""
    try:
        reply = MonitorClient(sock, timeout=LIFETIME).write_status(None, "alice", "Set slowly",
                                                                  "127.0.0.1 (uid 0, root)")
        result = {"ok": True, "reply": list(reply)}
    except Exception as exc:
        result = {"ok": False, "error": str(exc)}
    path = os.path.join(DIRECTORY, "reply")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)  # whole when the test sees it
    idle(sock, parent)


BODIES = {"idle": idle, "flood-sets": flood_sets, "no-read": no_read, "busy": busy,
          "one-set": one_set}


class TestWorkers(ForkedWorkers):
    """ForkedWorkers' signals and reaping, with a test body in the child."""

    def __init__(self, body):
        super().__init__(None, None, {})
        self.body = body

    def spawn(self, restarts, strict=False):
        parent_end, worker_end = channel()
        log_r, log_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for signum in HANDLED_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent passes HUP on
                parent_end.close()
                os.close(log_r)
                MonitorClient(worker_end).ready()
                worker_end.settimeout(None)
                (self.body if restarts == 0 else idle)(worker_end, parent)
            except BaseException:
                pass
            finally:
                os._exit(0)
        worker_end.close()
        os.close(log_w)
        os.set_blocking(log_r, False)
        return pid, parent_end, log_r


def main():
    global DIRECTORY
    body, DIRECTORY = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    if len(sys.argv) > 4:
        supervisor.WRITE_STOP_WAIT = float(sys.argv[4])
    if delay:
        real = fileio.replace_durably

        def slow(path, data, before_rename=None):
            def late():
                time.sleep(delay)
                if before_rename is not None:
                    before_rename()
            return real(path, data, late)

        fileio.replace_durably = slow
    handler = logsetup.configure(os.path.join(DIRECTORY, "parent.log"), True)
    config = SimpleNamespace(users_file=os.path.join(DIRECTORY, "users"))
    sys.exit(supervisor.Supervisor(config, {}, TestWorkers(BODIES[body]), handler).run())


DIRECTORY = None

if __name__ == "__main__":
    main()
