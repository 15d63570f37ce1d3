"""Which bound sockets conflict with an address fingerd -t checks, read from /proc tables."""

import ipaddress
import struct

import pytest

from fingerd.process.parent.address_check import conflicting

# Port 0x1F90 = 8080 in every line; states 0A listening, 07 bound only, 01 a connection.
PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1
   1: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 102 1
   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 103 1
   3: 0200007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104 1
   4: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 105 1
"""

PROC_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 201 1
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 202 1
   2: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 203 1
"""  # noqa: E501

little_endian = pytest.mark.skipif(struct.pack("=I", 1)[0] != 1,
                                   reason="the sample tables are little-endian")


def found(table, version, host, port=8080):
    return set(conflicting(table.splitlines(), version, ipaddress.ip_address(host), port))


@little_endian
def test_an_ipv4_address_conflicts_with_the_same_address_and_wildcards_bound_or_listening():
    assert found(PROC_TCP, 4, "127.0.0.1") == {101, 102}
    assert found(PROC_TCP, 4, "0.0.0.0") == {101, 102, 104}
    assert found(PROC_TCP, 4, "127.0.0.1", port=8081) == {105}


@little_endian
def test_an_ipv4_address_conflicts_with_an_ipv6_wildcard_and_its_own_mapped_form():
    assert found(PROC_TCP6, 6, "127.0.0.1") == {201, 202}


@little_endian
def test_an_ipv6_address_conflicts_with_ipv6_sockets_alone():
    assert found(PROC_TCP6, 6, "::1") == {201, 203}
    assert found(PROC_TCP6, 6, "::") == {201, 203}
