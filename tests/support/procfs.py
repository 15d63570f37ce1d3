"""Processes as /proc shows them: status fields, children, the daemon's worker, how
they are scheduled."""

import os
import socket
import subprocess

from tests.support.polling import wait_until


def proc_status(pid):
    """``/proc/PID/status`` as a dict of field to value."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                status = proc_status(int(name))
            except OSError:
                continue
            if status.get("PPid") == str(pid) and status.get("State", "")[:1] != "Z":
                found.append(int(name))
    return found


def processes_of(config_file):
    """Pids of the live processes whose command line names ``config_file``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if config_file.encode() in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def zombies_of(pid):
    """Pids of the ended, unreaped children of ``pid``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and fields[1] == str(pid):
            found.append(int(name))
    return found


def socket_inodes(pid):
    """The inodes of the sockets process ``pid`` holds."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def worker_of(daemon_pid, other_than=None):
    """The pid of the daemon's one worker, waiting until there is one (and not
    ``other_than``). The users file writer, a child of the parent too for a second
    after a set, has one thread, as the parent that forks it; a worker runs several
    from its first moments on."""
    def find():
        pids = [p for p in children(daemon_pid) if p != other_than and threads(p) > 1]
        return pids[0] if len(pids) == 1 else None
    return wait_until(find, what="the worker process")


def ended(pid):
    """Whether process ``pid`` has ended: gone, or a zombie not reaped yet whose threads
    have all ended. Its first thread is a zombie as soon as it has ended itself, while
    the others, still ending, hold the process's descriptors (a listening socket
    still completes connections)."""
    try:
        status = proc_status(pid)
    except OSError:
        return True
    return status["State"].startswith("Z") and status["Threads"] == "1"


def threads(pid):
    """How many threads ``pid`` runs; 0 once it is gone."""
    try:
        return int(proc_status(pid)["Threads"])
    except (OSError, KeyError):
        return 0


def descriptors(pid):
    """How many file descriptors ``pid`` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def resources(pid):
    """``(threads, descriptors)`` of ``pid``."""
    return threads(pid), descriptors(pid)


def scheduling(pid):
    """``(policy, niceness, I/O priority)`` of ``pid``: the last as ``ionice -p`` says it
    (``best-effort: prio 7``)."""
    io = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True,
                        check=True, timeout=10).stdout.strip()
    return os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid), io


def bound_sockets(pid):
    """``(protocol, address, port)`` of each TCP socket listening and each UDP socket
    that ``pid`` holds, as /proc/net says them (IPv4 addresses dotted)."""
    inodes = socket_inodes(pid)
    found = set()
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{protocol}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[9]) in inodes and (protocol[:3] == "udp" or fields[3] == "0A"):
                    address, port = fields[1].split(":")
                    if protocol in ("tcp", "udp"):
                        address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                    found.add((protocol, address, int(port, 16)))
    return found


def memory_files(pid, name):
    """How many of ``pid``'s descriptors are anonymous memory files called ``name``."""
    found = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"/memfd:{name} ")
        except OSError:
            continue
    return found
