"""Whether the root parent may bind ports below ``ip_unprivileged_port_start``.

Root binds them by CAP_NET_BIND_SERVICE, which a unit's CapabilityBoundingSet= can
take away (the drop-in fingerd-sockets.conf does, once .socket units hold those
ports): a start, or a reload, that would bind one itself is refused before
anything is bound, saying which capability is missing rather than asking for the
root it already is.
"""

from __future__ import annotations

from fingerd.config import Address

#: CAP_NET_BIND_SERVICE's bit in /proc/self/status's CapEff (capability.h).
CAP_NET_BIND_SERVICE = 10


def may_bind_low_ports(status: str = "/proc/self/status") -> bool:
    """Whether this process has CAP_NET_BIND_SERVICE in its effective set; True where
    that cannot be read, for the bind itself to say."""
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_BIND_SERVICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def needs_capability(address: Address, option: str, first_free: int) -> str:
    """The one-line reason a start or reload by root without CAP_NET_BIND_SERVICE gives
    for ``address`` of ``option``."""
    return (f"cannot listen on {address} ({option}): ports below {first_free} need "
            f"CAP_NET_BIND_SERVICE, which this root process lacks (its unit's "
            f"CapabilityBoundingSet= took it away, as fingerd-sockets.conf does): have a "
            f".socket unit hand the port over (fingerd(8), SOCKET ACTIVATION), give the "
            f"capability back, or set {option} to a port of {first_free} or more")
