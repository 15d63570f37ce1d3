"""The PROXY protocol header (HAProxy's doc/proxy-protocol.txt), versions 1 and 2: pure.

A proxy in front of fingerd sends it first on every connection, so that
limits, logs and the loopback rules see the real client. It is read
strictly: any doubt is an error and the connection is closed, since a
header taken wrongly would let a client choose the address it is counted
and logged by. Only the client's address and port are kept; TLVs are
checked for framing and otherwise ignored.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable
from typing import NamedTuple

#: v1's longest header, CRLF included (the specification's bound).
MAX_V1_BYTES = 107
#: v2's fixed part: signature, version and command, family and protocol, length.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = struct.Struct("!12sBBH")
#: Most bytes of addresses and TLVs after v2's fixed part that fingerd reads.
MAX_V2_PAYLOAD = 1024

_V1_PREFIX = b"PROXY "
_V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
#: A dotted quad without leading zeros, checked here whatever the Python: the ipaddress
#: module of Python 3.9.0 to 3.9.4 (Debian 11's 3.9.2 among them) takes 01.2.3.4 as
#: decimal, where inet_aton reads octal.
_QUAD = rb"(?:(?:0|[1-9][0-9]{0,2})\.){3}(?:0|[1-9][0-9]{0,2})"
_V1_ADDRESS = {b"TCP4": re.compile(_QUAD),
               b"TCP6": re.compile(rb"[0-9A-Fa-f:]{2,45}|[0-9A-Fa-f:]{1,29}:" + _QUAD)}
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
#: v2 family and protocol bytes fingerd takes an address from: TCP over IPv4 and IPv6,
#: with the length of their address block.
_V2_TCP = {0x11: (4, 12), 0x21: (16, 36)}
_V2_UNSPEC = 0x00
#: The other family and protocol bytes the specification defines (UDP over IPv4 and
#: IPv6, Unix stream and datagram): a receiver that does not take an address from them
#: must read them as UNSPEC, keeping the proxy's own address; any other byte is invalid.
_V2_AS_UNSPEC = frozenset((0x12, 0x22, 0x31, 0x32))


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol header; the text says what is wrong."""


class ProxyHeader(NamedTuple):
    """A complete header: its length in bytes, and the client it names as
    ``(host, port)``, or None when the proxy's own address is to be kept
    (v1 ``UNKNOWN``, v2 ``LOCAL``, an unspecified family or one without TCP)."""

    length: int
    client: tuple[str, int] | None


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data`` (bytes), None while it is incomplete.

    Raises ProxyHeaderError as soon as ``data`` cannot begin a valid header,
    so a client that sends something else is closed at once.
    """
    if data[:1] == V2_SIGNATURE[:1]:
        return _parse_v2(data)
    if data[:1] == _V1_PREFIX[:1]:
        return _parse_v1(data)
    if not data:
        return None
    raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not _V1_PREFIX.startswith(data[:len(_V1_PREFIX)]):
        raise ProxyHeaderError("v1: not a PROXY line")
    end = data.find(b"\r\n", 0, MAX_V1_BYTES)
    if end < 0:
        if len(data) >= MAX_V1_BYTES:
            raise ProxyHeaderError(f"v1: longer than {MAX_V1_BYTES} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise ProxyHeaderError("v1: line not ended by CRLF")
        return None
    line = data[len(_V1_PREFIX):end]
    if b"\n" in line or b"\r" in line:
        raise ProxyHeaderError("v1: line not ended by CRLF")
    if line == b"UNKNOWN" or line.startswith(b"UNKNOWN "):
        return ProxyHeader(end + 2, None)
    fields = line.split(b" ")
    if len(fields) != 5 or fields[0] not in _V1_ADDRESS:
        raise ProxyHeaderError("v1: expected TCP4|TCP6 SRC DST SPORT DPORT, single spaces")
    protocol, source, destination, source_port, destination_port = fields
    host = _v1_address(protocol, source)
    _v1_address(protocol, destination)
    port = _v1_port(source_port)
    _v1_port(destination_port)
    return ProxyHeader(end + 2, (host, port))


def _v1_address(protocol: bytes, field: bytes) -> str:
    if not _V1_ADDRESS[protocol].fullmatch(field):
        raise ProxyHeaderError(f"v1: not an {protocol.decode()} address")
    try:
        address = ipaddress.ip_address(field.decode("ascii"))
    except ValueError:
        raise ProxyHeaderError(f"v1: not an {protocol.decode()} address") from None
    if address.version != (4 if protocol == b"TCP4" else 6):
        raise ProxyHeaderError(f"v1: not an {protocol.decode()} address")
    return spelled(address)


def _v1_port(field: bytes) -> int:
    if not _V1_PORT.fullmatch(field) or int(field) > 65535:
        raise ProxyHeaderError("v1: port not a number from 0 to 65535 without leading zeros")
    return int(field)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not V2_SIGNATURE.startswith(data[:len(V2_SIGNATURE)]):
        raise ProxyHeaderError("v2: wrong signature")
    if len(data) < _V2_FIXED.size:
        return None
    _signature, version_command, family, length = _V2_FIXED.unpack_from(data)
    if version_command >> 4 != 2:
        raise ProxyHeaderError("v2: version not 2")
    command = version_command & 0xF
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError("v2: command neither LOCAL nor PROXY")
    if length > MAX_V2_PAYLOAD:
        raise ProxyHeaderError(f"v2: more than {MAX_V2_PAYLOAD} bytes of addresses and TLVs")
    if command == _V2_PROXY and family != _V2_UNSPEC and family not in _V2_TCP \
            and family not in _V2_AS_UNSPEC:
        raise ProxyHeaderError("v2: a family and protocol byte the specification does not define")
    if len(data) < _V2_FIXED.size + length:
        return None
    end = _V2_FIXED.size + length
    if command == _V2_LOCAL or family not in _V2_TCP:
        # The proxy's own connection, or a client fingerd takes no address from: its
        # block, family byte included, is skipped unread, as the specification has a
        # receiver of LOCAL, UNSPEC or a family it does not support do.
        return ProxyHeader(end, None)
    size, block = _V2_TCP[family]
    if length < block:
        raise ProxyHeaderError("v2: address block truncated")
    payload = data[_V2_FIXED.size:end]
    _check_tlvs(payload[block:])
    host = spelled(ipaddress.ip_address(payload[:size]))
    return ProxyHeader(end, (host, int.from_bytes(payload[2 * size:2 * size + 2], "big")))


def spelled(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``address`` as the kernel spells a peer's: an IPv4-mapped one with its IPv4 part
    dotted (``::ffff:1.2.3.4``, which Python before 3.13 writes ``::ffff:102:304``), so
    that a client has one spelling in the log, named by its proxy or not."""
    mapped = getattr(address, "ipv4_mapped", None)
    return f"::ffff:{mapped}" if mapped is not None else str(address)


def trusted(host: str,
            networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether a connection from ``host`` may send a header: its address (an IPv4-mapped
    one as its IPv4 address) in one of ``networks``."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address in network for network in networks)


def _check_tlvs(data: bytes) -> None:
    """Each TLV is a type byte, a 2-byte length and that many bytes, to the end exactly."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyHeaderError("v2: TLV truncated")
        offset += 3 + int.from_bytes(data[offset + 1:offset + 3], "big")
        if offset > len(data):
            raise ProxyHeaderError("v2: TLV truncated")
