"""The tests' reading of /proc (tests/support/procfs.py), where a test's verdict hangs on
it: a process ended is one whose descriptors are closed."""

import socket
import subprocess
import sys

from tests.support.polling import wait_until
from tests.support.procfs import ended, proc_status

#: A process whose first thread ends (pthread_exit) while a second one sleeps, with a
#: listening socket open: its first thread is a zombie, and the process goes on.
FIRST_THREAD_ENDS = """
import ctypes, socket, threading, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print(listener.getsockname()[1], flush=True)
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_first_thread_is_a_zombie_has_not_ended_while_another_runs():
    child = subprocess.Popen([sys.executable, "-c", FIRST_THREAD_ENDS],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        wait_until(lambda: proc_status(child.pid)["State"].startswith("Z"),
                   what="the first thread's end")
        assert proc_status(child.pid)["Threads"] == "2"
        assert not ended(child.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # its descriptors are open: the kernel still completes connections
    finally:
        child.kill()
        wait_until(lambda: ended(child.pid), what="the process's end")
        child.wait(10)
        child.stdout.close()


def test_a_zombie_whose_threads_have_all_ended_has_ended():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: proc_status(child.pid)["State"].startswith("Z"), what="its end")
    assert ended(child.pid)
    child.wait(10)
    assert ended(child.pid)
