"""Telling systemd how the daemon is (``Type=notify``; sd_notify(3)), standard library only.

systemd names a datagram socket in ``NOTIFY_SOCKET``: a path, or an abstract
address when it starts with ``@``. Only the root parent speaks (systemd
believes the main process alone with ``NotifyAccess=main``), so the variable
is removed from the environment the workers inherit. Without it every
message is dropped: under the init script, or started by hand.
"""

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Optional

log = logging.getLogger("fingerd")

READY = "READY=1"
STOPPING = "STOPPING=1"


def reloading() -> str:
    """The message that a reload began; READY follows once it ends, applied or not.
    MONOTONIC_USEC, as newer systemd asks for with it, says when."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def address_of(value: str) -> str:
    """The socket address ``NOTIFY_SOCKET`` names: ``@name`` is the abstract ``\\0name``."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends systemd the daemon's state; says once in the log if it cannot."""

    def __init__(self, address: Optional[str]) -> None:
        self.address = address
        self._warned = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> "Notifier":
        """The notifier ``NOTIFY_SOCKET`` names, taken out of ``environ``."""
        value = environ.pop("NOTIFY_SOCKET", "")
        return cls(address_of(value) if value.startswith(("/", "@")) else None)

    def send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait in the supervisor's loop: a full queue drops the message.
                sock.setblocking(False)
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot tell systemd %s at %s: %s", message.split("\n")[0],
                            self.address.replace("\0", "@"), exc.strerror or exc)
