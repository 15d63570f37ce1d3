"""The worker's confinement, tried from inside (docs/guide.md, "Processes and signals").

Each test forks a child that sheds root as the worker does, with the very
function the worker calls (``confine.shed_root``), and then tries what a
hostile worker would: create a process, run a program, reach into or signal
another process of its account. A control child, dropped to the same
account without the confinement, shows that each attempt is possible there.
"""

import ctypes
import errno
import mmap
import os
import pwd
import signal
import subprocess
import threading

import pytest

from fingerd.process.parent.accounts import Account
from fingerd.process.worker import confine
from fingerd.process.worker.privdrop import drop_privileges
from tests.support.children import in_child
from tests.support.markers import needs_root
from tests.support.procfs import proc_status

pytestmark = needs_root

NOBODY = pwd.getpwnam("nobody")
ACCOUNT = Account("nobody", NOBODY.pw_uid, NOBODY.pw_gid)

PTRACE_ATTACH = 16
PTRACE_SEIZE = 0x4206
CLONE_NEWUSER = 0x10000000
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_USER_KEYRING = -4

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def syscall(number, *args):
    """``"ok"`` or the errno name a raw system call failed with."""
    if _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args)) == -1:
        return errno.errorcode[ctypes.get_errno()]
    return "ok"


def outcome(attempt):
    """``"ok"``, or the errno name of the OSError ``attempt()`` raised."""
    try:
        attempt()
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def shed():
    """The worker's drop and confinement; the layers refused, as text."""
    return [str(layer) for layer in confine.shed_root(ACCOUNT)]


def drop_only():
    """The same account, without the confinement: the control."""
    drop_privileges(ACCOUNT.uid, ACCOUNT.gid)
    return []


def status_fields(*names):
    status = proc_status("self")
    return {name: status[name].strip() for name in names}


@pytest.fixture
def neighbour():
    """Another process of the worker's account, as another service's would be."""
    proc = subprocess.Popen(["sleep", "60"], user=NOBODY.pw_uid, group=NOBODY.pw_gid,
                            extra_groups=[])
    yield proc.pid
    proc.kill()
    proc.wait()


def fork_and_reap():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


#: A byte at the same address in every child forked from this process.
MARKER = ctypes.create_string_buffer(b"x")


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_read(pid, address):
    """Read one byte at ``address`` in ``pid`` with process_vm_readv."""
    local = IoVec(ctypes.addressof(ctypes.create_string_buffer(1)), 1)
    remote = IoVec(address, 1)
    return syscall(310, pid, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0)


def first_mapping(pid):
    with open(f"/proc/{pid}/maps") as f:
        return int(f.readline().split("-")[0], 16)


#: Attempts whose success depends on how the kernel was built and set up.
KERNEL_DEPENDENT = ("unshare a user namespace", "keyctl")


def attempts(neighbour, address, control=False):
    """Everything a hostile worker tries; for each, ``"ok"`` or its errno name.

    The control tries no exec in place of itself (it would succeed) and no
    PTRACE_ATTACH, which would leave the neighbour stopped.
    """
    gone = max(int(n) for n in os.listdir("/proc") if n.isdigit()) + 100000
    tried = {
        "fork": outcome(fork_and_reap),
        "subprocess": outcome(lambda: subprocess.run(["/bin/true"], check=True)),
        "posix_spawn": outcome(lambda: os.waitpid(os.posix_spawn("/bin/true", ["true"],
                                                                 {}), 0)),
        "ptrace seize": syscall(101, PTRACE_SEIZE, neighbour, 0, 0),
        # Refused before the kernel looks at the pid: ESRCH without the filter.
        "ptrace a pid that is not there": syscall(101, PTRACE_SEIZE, gone, 0, 0),
        "process_vm_readv": vm_read(neighbour, address),
        "kill": outcome(lambda: os.kill(neighbour, 0)),
        "pidfd_send_signal": outcome(lambda: signal.pidfd_send_signal(
            os.pidfd_open(neighbour), 0)),
        "unshare a user namespace": syscall(272, CLONE_NEWUSER),
        "keyctl": syscall(250, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0),
    }
    if not control:
        tried["ptrace attach"] = syscall(101, PTRACE_ATTACH, neighbour, 0, 0)
        tried["exec"] = outcome(lambda: os.execv("/bin/true", ["true"]))
    return tried


def test_the_control_can_do_what_the_confined_worker_cannot(neighbour):
    address = first_mapping(neighbour)
    result = in_child(lambda: (drop_only(), attempts(neighbour, address, control=True))[1])
    assert result.error is None
    tried = result.value
    assert tried.pop("ptrace a pid that is not there") == "ESRCH"
    for name in KERNEL_DEPENDENT:
        if tried[name] != "ok":
            tried.pop(name)  # this kernel lets no one do it
    assert tried == dict.fromkeys(tried, "ok")


def test_the_confined_worker_creates_no_process_and_runs_no_program(neighbour):
    address = first_mapping(neighbour)
    result = in_child(lambda: (shed(), attempts(neighbour, address))[1])
    assert result.error is None
    assert result.value == dict.fromkeys(result.value, "EPERM")


def test_the_confined_worker_can_still_start_threads_and_signal_itself():
    def body():
        refused = shed()
        results = []
        threads = [threading.Thread(target=results.append, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        caught = []
        signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
        signal.raise_signal(signal.SIGUSR1)  # tgkill to itself
        os.kill(os.getpid(), signal.SIGUSR1)
        return {"refused": refused, "threads": sorted(results), "caught": len(caught),
                # glibc creates threads with clone3 first: ENOSYS sends it to clone.
                "clone3": syscall(435, 0, 0),
                "setsid": outcome(os.setsid), "fork after setsid": outcome(fork_and_reap),
                "environment": dict(os.environ),
                "threads' status": [proc_status(f"self/task/{tid}")["Seccomp"].strip()
                                    for tid in os.listdir("/proc/self/task")],
                **status_fields("NoNewPrivs", "Seccomp", "CapBnd", "CapAmb", "CapEff",
                                "CapPrm", "CapInh")}
    result = in_child(body)
    assert result.error is None
    value = result.value
    assert value.pop("refused") == []
    assert value.pop("threads") == list(range(8))
    assert value.pop("caught") == 2
    env = value.pop("environment")
    assert env.pop("PATH") == "/usr/bin:/bin"
    assert set(env) <= {"TZ"}
    assert set(value.pop("threads' status")) == {"2"}
    assert value == {"clone3": "ENOSYS", "setsid": "ok", "fork after setsid": "EPERM",
                     "NoNewPrivs": "1", "Seccomp": "2", "CapBnd": "0" * 16, "CapAmb": "0" * 16,
                     "CapEff": "0" * 16, "CapPrm": "0" * 16, "CapInh": "0" * 16}


def test_no_other_process_of_the_account_can_trace_the_confined_worker():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the confined worker, waiting until the test is done
        try:
            os.close(write_end)
            shed()
            os.read(read_end, 1)
        finally:
            os._exit(0)
    os.close(read_end)
    try:
        result = in_child(lambda: (drop_only(), {
            "ptrace seize": syscall(101, PTRACE_SEIZE, pid, 0, 0),
            "process_vm_readv": vm_read(pid, ctypes.addressof(MARKER)),
            "environ": outcome(lambda: open(f"/proc/{pid}/environ").read())})[1])
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)
    assert result.error is None
    assert result.value == {"ptrace seize": "EPERM", "process_vm_readv": "EPERM",
                            "environ": "EACCES"}


def test_a_system_call_of_another_abi_kills_the_worker():
    x32_getpid = confine.X86_64.foreign_bit | 39
    result = in_child(lambda: (shed(), syscall(x32_getpid))[1])
    assert result.signal == signal.SIGSYS


I386_GETPID = bytes([0xB8, 20, 0, 0, 0,  # mov eax, 20 (getpid, i386)
                     0xCD, 0x80,         # int 0x80
                     0xC3])              # ret


def i386_getpid():
    """getpid through the i386 entry point of a 64-bit process."""
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(I386_GETPID)
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


def test_an_i386_system_call_kills_the_worker():
    if confine.ABIS.get(os.uname().machine) is not confine.X86_64:
        pytest.skip("an x86-64 test")
    control = in_child(i386_getpid)
    if control.value is None:
        pytest.skip(f"this kernel runs no i386 system call ({control})")
    assert in_child(lambda: (shed(), i386_getpid())[1]).signal == signal.SIGSYS


CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def lose_capability(cap):
    """Take ``cap`` out of this thread's effective and permitted sets (capset(2))."""
    header = CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    assert _libc.capget(ctypes.byref(header), data) == 0
    for field in ("effective", "permitted"):
        setattr(data[cap // 32], field, getattr(data[cap // 32], field) & ~(1 << cap % 32))
    assert _libc.capset(ctypes.byref(header), data) == 0


def test_where_the_kernel_refuses_a_layer_the_others_hold():
    def without_setpcap():
        # As a parent started without CAP_SETPCAP (a systemd unit that leaves it out).
        lose_capability(CAP_SETPCAP)
        return {"refused": shed(), "fork": outcome(fork_and_reap),
                **status_fields("NoNewPrivs", "Seccomp", "CapBnd")}
    result = in_child(without_setpcap)
    assert result.error is None
    value = result.value
    assert value["refused"] == ["empty capability bounding set not applied: PR_CAPBSET_DROP: "
                                "Operation not permitted (the parent lacks CAP_SETPCAP)"]
    assert int(value["CapBnd"], 16) != 0
    assert (value["fork"], value["NoNewPrivs"], value["Seccomp"]) == ("EPERM", "1", "2")

    def on_a_machine_the_filter_does_not_know():
        confine.ABIS.clear()
        return {"refused": shed(), "fork": outcome(fork_and_reap),
                "dumpable": _libc.prctl(confine.PR_GET_DUMPABLE, 0, 0, 0, 0),
                **status_fields("NoNewPrivs", "Seccomp", "CapBnd")}
    result = in_child(on_a_machine_the_filter_does_not_know)
    assert result.error is None
    assert result.value == {
        "refused": [f"seccomp filter not applied: no system call numbers for "
                    f"{os.uname().machine}"],
        "fork": "ok", "dumpable": 0, "NoNewPrivs": "1", "Seccomp": "0", "CapBnd": "0" * 16}


def test_every_jump_of_the_filter_fits_classic_bpf():
    code = confine.filter_program(confine.X86_64, 1234)
    assert len(code) % 8 == 0 and len(code) // 8 < 100
    with pytest.raises(ValueError):
        confine.assemble([("jeq", 1, "far", 0), *[("ret", 0)] * 300, "far", ("ret", 0)])
