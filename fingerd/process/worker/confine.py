"""What the worker gives up besides root: children, programs, other processes.

``shed_root`` is the worker's whole drop, in the one order that works:

1. the capability bounding set is emptied while the process is still root
   (``PR_CAPBSET_DROP`` needs ``CAP_SETPCAP``) and still has one thread (the
   set is each thread's own; the threads started later inherit it);
2. root is shed (``privdrop.drop_privileges``, which also sets
   ``PR_SET_NO_NEW_PRIVS``, without which an unprivileged process may not
   install a seccomp filter);
3. ``confine``: ``no_new_privs`` (again: a worker that was never root has
   not set it yet); the process is made non-dumpable, so that no other
   process of the account can ptrace it or read its memory; its environment
   is emptied; and a seccomp filter makes the system calls that create a
   process, run a program or reach into another process fail.

The filter is ours rather than libseccomp's: the Python binding is a Debian
package (python3-seccomp) for Debian's own interpreter only, and fingerd is
installed with pip for whichever Python runs it; the program is 39
instructions, each rule tested.

The filter is a small classic-BPF program of our own, built here and
installed with seccomp(2) and ``SECCOMP_FILTER_FLAG_TSYNC`` (every thread,
and ``no_new_privs`` with it). In order, it

- kills the process for a system call of a foreign ABI: another audit
  architecture (i386 through ``int 0x80``) or x32 (numbers with
  ``__X32_SYSCALL_BIT``), whose numbers the rules below do not name;
- fails ``execve`` and ``execveat`` with EPERM: no program can be run;
- fails ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD`` with EPERM,
  and ``clone`` with any namespace flag: threads only;
- fails ``clone3`` with ENOSYS: its flags are in memory, which a filter cannot
  read, and glibc (2.34 and later) then creates its threads with ``clone``,
  as it does under container runtimes;
- fails ``unshare`` and ``setns`` with EPERM: in a user namespace of its own
  the worker would hold every capability again;
- fails ``ptrace``, ``process_vm_readv``, ``process_vm_writev``,
  ``process_madvise``, ``pidfd_getfd``, ``kcmp`` and ``perf_event_open`` with
  EPERM: each reaches into another process under the ptrace access check;
- lets ``kill``, ``tgkill``, ``rt_sigqueueinfo`` and ``rt_tgsigqueueinfo``
  signal the worker itself only (``raise``, ``abort`` and ``pthread_kill``
  keep working), and fails ``tkill`` and ``pidfd_send_signal`` with EPERM:
  other processes of the account cannot be signalled;
- fails ``add_key``, ``request_key`` and ``keyctl`` with EPERM: a user's
  keyrings are shared by every process of the account;
- allows everything else.

Each layer stands alone: where the kernel refuses one (no seccomp, no
``CAP_SETPCAP``, a machine the filter has no numbers for), the functions
return what was refused and why, and the worker logs it once and serves with
the others.
"""

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

from fingerd.process.worker.privdrop import drop_privileges

if TYPE_CHECKING:
    from fingerd.process.parent.accounts import Account

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# Classic BPF, as seccomp runs it: load a 32-bit word of struct seccomp_data,
# compare, return.
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
NR_OFFSET = 0
ARCH_OFFSET = 4
ARG0_LOW_OFFSET = 16  # the low half of args[0] on a little-endian machine

CLONE_THREAD = 0x00010000
CLONE_NAMESPACES = (0x00020000    # CLONE_NEWNS
                    | 0x02000000  # CLONE_NEWCGROUP
                    | 0x04000000  # CLONE_NEWUTS
                    | 0x08000000  # CLONE_NEWIPC
                    | 0x10000000  # CLONE_NEWUSER
                    | 0x20000000  # CLONE_NEWPID
                    | 0x40000000)  # CLONE_NEWNET


class Abi:
    """A machine's system call numbers, as far as the filter names them."""

    def __init__(self, audit_arch: int, seccomp: int, numbers: dict[str, int],
                 foreign_bit: Optional[int] = None) -> None:
        self.audit_arch = audit_arch
        self.seccomp = seccomp
        self.numbers = numbers
        self.foreign_bit = foreign_bit

    def __getitem__(self, name: str) -> int:
        return self.numbers[name]


#: linux/arch/x86/entry/syscalls/syscall_64.tbl.
X86_64 = Abi(
    audit_arch=0xC000003E,  # AUDIT_ARCH_X86_64
    seccomp=317,
    foreign_bit=0x40000000,  # __X32_SYSCALL_BIT
    numbers={
        "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "kill": 62, "ptrace": 101,
        "rt_sigqueueinfo": 129, "tkill": 200, "tgkill": 234, "add_key": 248,
        "request_key": 249, "keyctl": 250, "unshare": 272, "rt_tgsigqueueinfo": 297,
        "perf_event_open": 298, "setns": 308, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "execveat": 322, "pidfd_send_signal": 424,
        "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440,
    })

ABIS = {"x86_64": X86_64}

#: System calls that fail with EPERM whatever their arguments.
DENIED = ("execve", "execveat", "fork", "vfork", "unshare", "setns", "ptrace",
          "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
          "perf_event_open", "tkill", "pidfd_send_signal", "add_key", "request_key", "keyctl")
#: System calls allowed only when their first argument is the worker's own pid.
TO_ITSELF = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

#: The worker's whole environment, plus TZ when it was set (login times are local).
ENVIRONMENT = {"PATH": "/usr/bin:/bin"}
KEPT_VARIABLES = ("TZ",)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


#: Where a jump goes: a label, or a number of instructions to skip.
Jump = Union[str, int]
#: ``(op, k)`` for a load or a return, ``(op, k, jump if true, jump if false)`` for a test.
Instruction = Union[tuple[str, int], tuple[str, int, Jump, Jump]]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Refused(NamedTuple):
    """A layer the kernel would not apply, and why."""

    layer: str
    reason: str

    def __str__(self) -> str:
        return f"{self.layer} not applied: {self.reason}"


def shed_root(account: "Optional[Account]", pid: Optional[int] = None) -> list[Refused]:
    """The worker's drop: every layer, in order; ``account`` None keeps the user.

    Returns the Refused layers; raises PrivilegeError when root cannot be shed.
    Call it while the process has one thread, as the worker does.
    """
    refused: list[Refused] = []
    if account is not None:
        refused += drop_bounding_set()
        drop_privileges(account.uid, account.gid)
    refused += confine(pid)
    return refused


def drop_bounding_set() -> list[Refused]:
    """Empty the capability bounding set (and the ambient set); needs CAP_SETPCAP."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)  # none: nothing to clear (pre-4.3)
    for cap in range(_last_cap() + 1):
        if _prctl(PR_CAPBSET_READ, cap) != 1:
            continue
        if _prctl(PR_CAPBSET_DROP, cap) != 0:
            reason = os.strerror(ctypes.get_errno())
            if ctypes.get_errno() == errno.EPERM:
                reason += " (the parent lacks CAP_SETPCAP)"
            return [Refused("empty capability bounding set", f"PR_CAPBSET_DROP: {reason}")]
    return []


def confine(pid: Optional[int] = None) -> list[Refused]:
    """After the drop: no_new_privs (set already by a drop from root), non-dumpable,
    no environment, the seccomp filter.

    ``pid`` is the process the filter lets signal itself (this one by default).
    Returns the Refused layers.
    """
    refused: list[Refused] = []
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        refused.append(Refused("no_new_privs", f"PR_SET_NO_NEW_PRIVS: "
                                               f"{os.strerror(ctypes.get_errno())}"))
    if _prctl(PR_SET_DUMPABLE, 0) != 0 or _prctl(PR_GET_DUMPABLE) != 0:
        refused.append(Refused("non-dumpable", f"PR_SET_DUMPABLE: "
                                               f"{os.strerror(ctypes.get_errno())}"))
    scrub_environment()
    refused += install_filter(os.getpid() if pid is None else pid)
    return refused


def scrub_environment() -> None:
    """Replace the environment with ``ENVIRONMENT`` and the ``KEPT_VARIABLES`` set."""
    kept = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
    os.environ.clear()
    os.environ.update(ENVIRONMENT, **kept)


def install_filter(pid: int) -> list[Refused]:
    """Install the filter on every thread; ``[]`` or the one Refused layer."""
    abi = ABIS.get(platform.machine())
    if abi is None:
        return [Refused("seccomp filter", f"no system call numbers for {platform.machine()}")]
    if _prctl(PR_GET_NO_NEW_PRIVS) != 1:
        return [Refused("seccomp filter", "no_new_privs is not set")]
    code = filter_program(abi, pid)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    result = _libc.syscall(ctypes.c_long(abi.seccomp), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                           ctypes.c_long(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
    if result == 0:
        return []
    if result > 0:
        return [Refused("seccomp filter", f"thread {result} could not be synchronized")]
    return [Refused("seccomp filter", f"seccomp(2): {os.strerror(ctypes.get_errno())}")]


def filter_program(abi: Abi, pid: int) -> bytes:
    """The filter's bytes (struct sock_filter[]) for ``abi``, letting ``pid`` signal itself."""
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    program: list[Union[str, Instruction]] = [
        ("ld", ARCH_OFFSET),
        ("jeq", abi.audit_arch, 0, "kill"),
        ("ld", NR_OFFSET),
    ]
    if abi.foreign_bit is not None:
        program += [("jge", abi.foreign_bit, 0, 1),
                    ("jeq", 0xFFFFFFFF, 0, "kill")]  # -1 is no system call (ENOSYS), as
        # libseccomp has it; any other number with the bit is x32's
    program += [("jeq", abi[name], "eperm", 0) for name in DENIED]
    program += [
        ("jeq", abi["clone3"], "enosys", 0),
        ("jeq", abi["clone"], "clone", 0),
        *[("jeq", abi[name], "itself", 0) for name in TO_ITSELF],
        ("ret", SECCOMP_RET_ALLOW),
        "clone",
        ("ld", ARG0_LOW_OFFSET),  # the kernel reads the flags' low 32 bits only
        ("jset", CLONE_NAMESPACES, "eperm", 0),
        ("jset", CLONE_THREAD, "allow", "eperm"),
        "itself",
        ("ld", ARG0_LOW_OFFSET),  # a pid_t: the kernel reads the low 32 bits only
        ("jeq", pid & 0xFFFFFFFF, "allow", "eperm"),
        "allow",
        ("ret", SECCOMP_RET_ALLOW),
        "eperm",
        ("ret", eperm),
        "enosys",
        ("ret", SECCOMP_RET_ERRNO | errno.ENOSYS),
        "kill",
        ("ret", SECCOMP_RET_KILL_PROCESS),
    ]
    return assemble(program)


def assemble(program: Sequence[Union[str, Instruction]]) -> bytes:
    """Instructions and labels (strings) to bytes; a jump names a label or skips N."""
    labels: dict[str, int] = {}
    instructions: list[Instruction] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)

    def offset(target: Jump, at: int) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - at - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"jump to {target} out of range")
        return distance

    out: list[bytes] = []
    for at, (op, k, *jumps) in enumerate(instructions):
        if op == "ld":
            out.append(struct.pack("=HBBI", BPF_LD_W_ABS, 0, 0, k))
        elif op == "ret":
            out.append(struct.pack("=HBBI", BPF_RET_K, 0, 0, k))
        else:
            code = {"jeq": BPF_JEQ_K, "jge": BPF_JGE_K, "jset": BPF_JSET_K}[op]
            jt, jf = (offset(j, at) for j in jumps)
            out.append(struct.pack("=HBBI", code, jt, jf, k))
    return b"".join(out)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63  # PR_CAPBSET_READ fails (-1) past the kernel's last one


def _prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return int(_libc.prctl(option, arg2, arg3, arg4, arg5))
