"""A test's body run in a network namespace of its own, where it may set the kernel's
network settings without touching the machine's."""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")

_CLONE_NEWNET = 0x40000000
#: Seconds the body may take in all; every wait in it is bounded well within this.
BODY_SECONDS = 300


def in_network_namespace(body: Callable[[], Result], sysctls: dict[str, str]) -> Result:
    """``body()``'s value, or its exception, run on a thread that has entered a new
    network namespace, loopback up and ``sysctls`` (paths under /proc/sys/net) set.

    A network namespace belongs to a thread: the sockets the body makes and the
    processes it starts (a daemon, ended by its pid as every other) are there,
    and the rest of the test process is not. Root only."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"unshare(CLONE_NEWNET): {os.strerror(error)}")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
            for name, value in sysctls.items():
                with open(os.path.join("/proc/sys/net", name), "w") as f:
                    f.write(value)
            outcome["value"] = body()
        except BaseException as exc:  # noqa: BLE001 - raised again on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="netns", daemon=True)
    thread.start()
    thread.join(BODY_SECONDS)
    assert not thread.is_alive(), f"the body did not end within {BODY_SECONDS} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
