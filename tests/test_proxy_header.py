"""The PROXY protocol header parser: the valid forms, aiosmtpd's malformation matrix, and
properties over any bytes."""

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.serving.proxy_header import (
    MAX_V1_BYTES,
    MAX_V2_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)

IP6_SRC, IP6_DST = "2020:dead::1", "2021:cafe::2"


def v2(command=1, family=0x11, payload=b"", version=2, signature=V2_SIGNATURE):
    return signature + struct.pack("!BBH", version << 4 | command, family, len(payload)) + payload


def tcp4(src="10.212.4.33", dst="10.11.12.13", sport=4321, dport=79, tlvs=b""):
    return (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
            + struct.pack("!HH", sport, dport) + tlvs)


def tcp6(src=IP6_SRC, dst=IP6_DST, sport=65534, dport=79, tlvs=b""):
    return tcp4(src, dst, sport, dport, tlvs)


@pytest.mark.parametrize("data, client", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n", ("1.2.3.4", 0)),
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", ("255.255.255.255", 65535)),
    (f"PROXY TCP6 {IP6_SRC} {IP6_DST} 8000 79\r\n".encode(), (IP6_SRC, 8000)),
    (b"PROXY TCP6 2020:dead:0:0:0:0:0:0001 ::1 1 2\r\n", ("2020:dead::1", 1)),
    (b"PROXY TCP6 64:ff9b::10.0.0.1 ::1.2.3.4 1 2\r\n", ("64:ff9b::a00:1", 1)),
    # An IPv4-mapped address as the kernel spells a direct client's, in any Python.
    (b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", ("::ffff:1.2.3.4", 1)),
    (b"PROXY TCP6 0:0:0:0:0:ffff:0102:0304 ::1 1 2\r\n", ("::ffff:1.2.3.4", 1)),
    (v2(family=0x21, payload=tcp6(src="::ffff:10.0.0.7")), ("::ffff:10.0.0.7", 65534)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN whatever 1 2 3\r\n", None),
    (v2(payload=tcp4()), ("10.212.4.33", 4321)),
    (v2(family=0x21, payload=tcp6()), (IP6_SRC, 65534)),
    (v2(payload=tcp4(tlvs=b"\x02\x00\x09AUTHORITY\x05\x00\x00")), ("10.212.4.33", 4321)),
    (v2(command=0, family=0x00), None),
    (v2(command=0, family=0x00, payload=b"asdfghjkl"), None),
    (v2(command=0, family=0x11, payload=tcp4()), None),
    (v2(command=0, family=0x31, payload=b"/proc/source".ljust(216, b"\0")), None),
    (v2(command=1, family=0x00, payload=b"whatever"), None),
    # LOCAL: the family is ignored with the rest of the block, even one no version knows.
    (v2(command=0, family=0x41, payload=b"anything"), None),
    (v2(command=0, family=0xFF), None),
    (v2(command=0, family=0x13, payload=bytes(7)), None),
    # PROXY with a family the specification defines but fingerd takes no address from
    # (UDP, Unix): read as UNSPEC, the proxy's own address kept, the block skipped.
    (v2(family=0x12, payload=tcp4()), None),
    (v2(family=0x22, payload=tcp6()), None),
    (v2(family=0x31, payload=b"/proc/source".ljust(216, b"\0")), None),
    (v2(family=0x32, payload=bytes(216)), None),
])
def test_valid_headers(data, client):
    assert parse_proxy_header(data + b"alice\r\n") == ProxyHeader(len(data), client)


@pytest.mark.parametrize("data", [
    b"alice\r\n",
    b"NOTPROX TCP4 1.2.3.4 5.6.7.8 65535 65535\r\n",
    b"PROXY UNKNOWN " + b"*" * 100 + b"\r\n",
    b"PROXY UNKNOWN\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY TCP6 1.2.3.4 5.6.7.8 65535 65535\r\n",
    f"PROXY TCP4 {IP6_SRC} {IP6_DST} 1 2\r\n".encode(),
    f"PROXY TCP6 1.2.3.4 {IP6_DST} 1 2\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC} {IP6_DST} 02501 2\r\n".encode(),
    f"PROXY TCP6  {IP6_SRC} {IP6_DST} 1 2\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC}  {IP6_DST} 1 2\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC} {IP6_DST}  8080 2\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC} {IP6_DST} 1  0\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC} {IP6_DST} 1 0 \r\n".encode(),
    f"PROXY TCP6 {IP6_SRC[:-1]}g {IP6_DST} 1 2\r\n".encode(),
    f"PROXY TCP6 {IP6_SRC} {IP6_DST[:-1]}h 1 2\r\n".encode(),
    b"PROXY TCP4 1.2.3.a 5.6.7.8 65535 65535\r\n",
    # Leading zeros, which Python 3.9.0 to 3.9.4's ipaddress reads as decimal:
    b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.010 1 2\r\n",
    b"PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n",
    b"PROXY TCP6 ::1 ::1.2.3.04 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 10200\r\n",
    f"PROXY TCP6 {IP6_SRC} {IP6_DST} 10000 65536\r\n".encode(),
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    v2(signature=b"\r\n\r\n\x00\r\nQUIP\n", payload=tcp4()),
    v2(version=3, payload=tcp4()),
    v2(version=1, payload=tcp4()),
    v2(command=2, payload=tcp4()),
    v2(family=0x41, payload=tcp4()),
    v2(family=0x13, payload=tcp4()),
    v2(family=0x23, payload=tcp6()),
    v2(family=0x33, payload=bytes(216)),
    v2(family=0x21, payload=tcp4()),
    v2(payload=tcp4()[:11]),
    v2(payload=tcp4(tlvs=b"\x02\x00\x09AUTHORI")),
    v2(payload=tcp4(tlvs=b"\x02\x00")),
    v2(payload=tcp4(tlvs=b"fake_tlv")),
    v2(payload=tcp4(tlvs=b"\x04" + struct.pack("!H", MAX_V2_PAYLOAD) + bytes(MAX_V2_PAYLOAD))),
    v2(command=0, family=0x41, payload=bytes(MAX_V2_PAYLOAD + 1)),
])
def test_malformed_headers_are_errors(data):
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n",
    b"PROXY UNKNOWN\r\n",
    v2(payload=tcp4(tlvs=b"\x02\x00\x09AUTHORITY")),
    v2(command=0, family=0x00),
    v2(command=0, family=0x41, payload=b"anything"),
])
def test_every_proper_prefix_of_a_header_is_incomplete(header):
    for end in range(len(header)):
        assert parse_proxy_header(header[:end]) is None, header[:end]


def test_v1_at_its_length_bound():
    longest = b"PROXY UNKNOWN " + b"x" * (MAX_V1_BYTES - 16) + b"\r\n"
    assert len(longest) == MAX_V1_BYTES
    assert parse_proxy_header(longest) == ProxyHeader(MAX_V1_BYTES, None)
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(longest[:-2] + b"x\r\n")
    with pytest.raises(ProxyHeaderError, match="longer than"):
        parse_proxy_header(longest[:-2] + b"x" * 10)


def _outcome(data):
    try:
        return parse_proxy_header(data)
    except ProxyHeaderError:
        return "error"


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_the_modules_own_error(data):
    result = _outcome(data)
    assert result is None or result == "error" or (
        isinstance(result, ProxyHeader) and 0 < result.length <= len(data))


headers = st.one_of(
    st.builds(lambda a, b, p, q: f"PROXY TCP4 {a} {b} {p} {q}\r\n".encode(),
              st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535),
              st.integers(0, 65535)),
    st.builds(lambda a, b, p, q: f"PROXY TCP6 {a} {b} {p} {q}\r\n".encode(),
              st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 65535),
              st.integers(0, 65535)),
    st.builds(lambda a, b, p, q, t: v2(payload=tcp4(str(a), str(b), p, q, t)),
              st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535),
              st.integers(0, 65535),
              st.lists(st.binary(max_size=40), max_size=4).map(
                  lambda values: b"".join(b"\x05" + struct.pack("!H", len(v)) + v
                                          for v in values))),
)


@given(headers, st.binary(max_size=40))
def test_a_valid_header_is_found_whole_and_fed_byte_by_byte_the_same(header, rest):
    whole = parse_proxy_header(header + rest)
    assert whole.length == len(header)
    assert whole.client is not None
    for end in range(len(header)):
        assert parse_proxy_header(header[:end]) is None


@given(st.binary(max_size=200), st.binary(max_size=60))
def test_more_bytes_never_undo_an_answer(data, more):
    """Once a prefix has an answer (a header or an error), every longer input has the
    same one: what the loop decides on the bytes so far is final."""
    first = _outcome(data)
    if first is not None:
        assert _outcome(data + more) == first
