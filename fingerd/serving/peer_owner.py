"""Which local account owns the other end of a connection, as the kernel tells it.

On a loopback TCP connection the client's socket is a socket of this host:
one NETLINK_SOCK_DIAG request naming the exact four-tuple returns its
owner's uid (sock_diag(7); no privilege needed, about 0.06 ms). Where the
kernel has no sock_diag, /proc/net/tcp and tcp6 say the same, at a cost that
grows with every socket on the host, so that path is counted. On a Unix
socket, SO_PEERCRED gives the peer's credentials at connect time.

The owner is None whenever it cannot be told: no such socket (the client is
gone, or in another network namespace), or a socket reporting uid 0 with
inode 0, which is a closed or half-open socket and never root. Message
encoding and decoding are pure functions, tested apart from the kernel.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from _socket import socket as RawSocket
from collections.abc import Callable, Iterable
from typing import Union

from fingerd.outcomes import PEERCRED, PROC, SOCK_DIAG

log = logging.getLogger(__name__)

#: NETLINK_SOCK_DIAG; Python 3.11's socket module lacks the constant.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
#: Every TCP state: the lookup is by the exact four-tuple, whatever the state.
_ALL_STATES = 0xFFFFFFFF
#: INET_DIAG_NOCOOKIE, both words.
_NO_COOKIE = (0xFFFFFFFF, 0xFFFFFFFF)
#: The uid user namespaces show for an id they cannot map: never a real user.
OVERFLOW_UID = 65534

_NLMSGHDR = struct.Struct("=IHHII")
#: inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid:
#: sport and dport (big-endian), src and dst (16 bytes each), interface, cookie.
_REQUEST = struct.Struct("=BBBBI")
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
#: inet_diag_msg after its sockid: expires, rqueue, wqueue, uid, inode.
_MESSAGE_HEAD = struct.Struct("=BBBB")
_MESSAGE_TAIL = struct.Struct("=IIIII")
_SOCKID_SIZE = _SOCKID.size + _SOCKID_TAIL.size
_MESSAGE_SIZE = _MESSAGE_HEAD.size + _SOCKID_SIZE + _MESSAGE_TAIL.size
_ERROR = struct.Struct("=i")

#: errno values that mean the kernel has no sock_diag for us.
_NO_SOCK_DIAG = frozenset((errno.EPROTONOSUPPORT, errno.EOPNOTSUPP, errno.ECONNREFUSED,
                           errno.EACCES, errno.EAFNOSUPPORT))

_SO_PEERCRED = struct.Struct("=iII")

#: A TCP end as getpeername and getsockname give it: ``(host, port)``, and for IPv6
#: flowinfo and scope id after them.
Address = Union[tuple[str, int], tuple[str, int, int, int]]
#: An address as this module compares them: IPv4-mapped IPv6 as IPv4, and the port.
_End = tuple[Union[ipaddress.IPv4Address, ipaddress.IPv6Address], int]


class SockDiagError(OSError):
    """A sock_diag answer that tells nothing: an error, or not a reply at all."""


class NoSockDiag(SockDiagError):
    """This kernel answers no sock_diag request: the /proc scan must do."""


def _malformed(what: str) -> SockDiagError:
    return SockDiagError(errno.EPROTO, f"sock_diag: {what}")


def _packed(address: str) -> tuple[int, bytes]:
    """An address as the 16 bytes of an inet_diag_sockid field, and its family."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 4:
        return socket.AF_INET, ip.packed + bytes(12)
    return socket.AF_INET6, ip.packed


def encode_request(client: Address, server: Address, sequence: int = 1) -> bytes:
    """The netlink message asking for the socket whose local end is ``client`` and
    whose remote end is ``server`` (``(host, port)`` pairs as getpeername and
    getsockname give them, from the server's side)."""
    family, src = _packed(client[0])
    _family, dst = _packed(server[0])
    body = (_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
            + _SOCKID.pack(client[1], server[1], src, dst)
            + _SOCKID_TAIL.pack(0, *_NO_COOKIE))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                          sequence, 0) + body


def decode_reply(data: bytes, client: Address, server: Address) -> int | None:
    """The owner's uid from the kernel's reply to ``encode_request(client, server)``, or
    None when the socket was not found or is closed or half-open. Raises SockDiagError.

    The kernel looks the four-tuple up as it would route a packet: where no
    connection has it, a socket listening on the client's port answers, its
    owner anyone's. A reply about another socket than the one asked for says
    that the client's is gone."""
    if len(data) < _NLMSGHDR.size:
        raise _malformed("short netlink header")
    length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data)
    if length > len(data) or length < _NLMSGHDR.size:
        raise _malformed("netlink length beyond the datagram")
    if kind == NLMSG_ERROR:
        if length < _NLMSGHDR.size + _ERROR.size:
            raise _malformed("short netlink error")
        (code,) = _ERROR.unpack_from(data, _NLMSGHDR.size)
        if -code == errno.ENOENT:
            return None
        if -code in _NO_SOCK_DIAG:
            raise NoSockDiag(-code, "sock_diag: not available")
        raise SockDiagError(-code, f"sock_diag: error {-code}")
    if kind != SOCK_DIAG_BY_FAMILY or length < _NLMSGHDR.size + _MESSAGE_SIZE:
        raise _malformed(f"unexpected netlink message type {kind}")
    family = data[_NLMSGHDR.size]
    sport, dport, src, dst = _SOCKID.unpack_from(data, _NLMSGHDR.size + _MESSAGE_HEAD.size)
    if ((_diag_address(family, src), sport), (_diag_address(family, dst), dport)) != (
            (_plain(client[0]), client[1]), (_plain(server[0]), server[1])):
        return None
    offset = _NLMSGHDR.size + _MESSAGE_HEAD.size + _SOCKID_SIZE
    _expires, _rqueue, _wqueue, uid, inode = _MESSAGE_TAIL.unpack_from(data, offset)
    return _known(uid, inode)


def _diag_address(family: int, field: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of a reply's sockid as this module compares them: an AF_INET socket's
    in the first 4 bytes, an AF_INET6 one's (IPv4-mapped as IPv4) in all 16."""
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(field[:4])
    ip = ipaddress.IPv6Address(field)
    return ip.ipv4_mapped or ip


def _known(uid: int, inode: int) -> int | None:
    if inode == 0 or uid == OVERFLOW_UID:
        return None
    return uid


def owner_by_sock_diag(client: Address, server: Address) -> int | None:
    """Ask the kernel; raises NoSockDiag where it has no sock_diag."""
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise NoSockDiag(exc.errno, exc.strerror) from None
    with nl:
        nl.settimeout(1.0)
        try:
            nl.send(encode_request(client, server))
            reply = nl.recv(8192)
        except OSError as exc:
            if exc.errno in _NO_SOCK_DIAG:
                raise NoSockDiag(exc.errno, exc.strerror) from None
            raise SockDiagError(exc.errno, exc.strerror) from None
        return decode_reply(reply, client, server)


def proc_address(text: str, version: int) -> _End:
    """An address as /proc/net/tcp{,6} prints it (32-bit words in host byte order)."""
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    packed = b"".join(struct.pack("=I", int.from_bytes(w, "big")) for w in words)
    ip = ipaddress.ip_address(packed)
    if version == 6 and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(port, 16)


def owner_in_proc_table(lines: Iterable[str], client: Address, server: Address,
                        version: int) -> int | None:
    """The owner of the socket whose local end is ``client`` and remote end ``server``,
    from the lines of /proc/net/tcp (``version`` 4) or tcp6 (6); None if absent."""
    want_local = (_plain(client[0]), client[1])
    want_remote = (_plain(server[0]), server[1])
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[0] == "sl":
            continue
        try:
            local = proc_address(fields[1], version)
            remote = proc_address(fields[2], version)
            uid, inode = int(fields[7]), int(fields[9])
        except ValueError:
            continue
        if local == want_local and remote == want_remote:
            return _known(uid, inode)
    return None


def _plain(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def owner_by_proc(client: Address, server: Address) -> int | None:
    """The slow path: scan /proc/net/tcp and tcp6."""
    for version, path in ((4, "/proc/net/tcp"), (6, "/proc/net/tcp6")):
        try:
            with open(path) as f:
                uid = owner_in_proc_table(f, client, server, version)
        except OSError:
            continue
        if uid is not None:
            return uid
    return None


def owner_of_unix_peer(sock: RawSocket) -> int | None:
    """The uid of the process that connected to the Unix socket ``sock`` (SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _SO_PEERCRED.size)
    if len(data) != _SO_PEERCRED.size:
        return None
    _pid, uid, _gid = _SO_PEERCRED.unpack(data)
    return None if uid == OVERFLOW_UID else uid


class OwnerLookup:
    """Finds the owner of a client's end for one server's thread.

    sock_diag first; once the kernel says it has none, /proc for good, said
    once in the log. ``count(method)`` is called for every lookup, so that an
    operator sees the slow path being taken. Any other failure makes the
    owner unknown, logged once.
    """

    def __init__(self, count: Callable[[str], object]) -> None:
        self._count = count
        self._proc_only = False
        self._failed = False

    def of_tcp(self, client: Address, server: Address) -> int | None:
        """The uid owning the socket at ``client`` connected to ``server``, or None."""
        if not self._proc_only:
            try:
                uid = owner_by_sock_diag(client, server)
            except NoSockDiag as exc:
                self._proc_only = True
                log.warning("no sock_diag in this kernel (%s): finding setter clients' "
                            "accounts in /proc/net/tcp, which is slow on a busy host",
                            exc.strerror)
            except SockDiagError as exc:
                self._report(exc)
                return None
            else:
                self._count(SOCK_DIAG)
                return uid
        self._count(PROC)
        return owner_by_proc(client, server)

    def of_unix(self, sock: RawSocket) -> int | None:
        """The uid of the process at the other end of the Unix socket ``sock``, or None."""
        self._count(PEERCRED)
        try:
            return owner_of_unix_peer(sock)
        except OSError as exc:
            self._report(exc)
            return None

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("cannot tell who owns a setter client's socket: %s; such clients "
                      "are treated as unknown", exc)
