"""Who owns the other end of a connection: sock_diag messages, /proc tables, real sockets."""

import errno
import os
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.serving import peer_owner
from fingerd.serving.peer_owner import (
    SOCK_DIAG_BY_FAMILY,
    SockDiagError,
    decode_reply,
    encode_request,
    owner_by_proc,
    owner_by_sock_diag,
    owner_in_proc_table,
    owner_of_unix_peer,
)

#: The ends asked about, and their sockid (ports and addresses) in the replies made below.
ENDS = (("127.0.0.1", 40000), ("127.0.0.1", 1079))
ASKED = encode_request(*ENDS)[24:60]


def reply(uid, inode, kind=SOCK_DIAG_BY_FAMILY, sockid=ASKED):
    body = struct.pack("=BBBB", socket.AF_INET, 1, 0, 0) + sockid + bytes(12) + struct.pack(
        "=IIIII", 0, 0, 0, uid, inode)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 1, 0) + body


def error_reply(code):
    return struct.pack("=IHHII", 20, 2, 0, 1, 0) + struct.pack("=i", -code)


def test_request_names_the_exact_four_tuple_client_end_first():
    data = encode_request(("127.0.0.1", 40000), ("127.0.0.2", 1079), sequence=7)
    length, kind, flags, sequence, _pid = struct.unpack_from("=IHHII", data)
    assert (length, kind, flags, sequence) == (len(data), 20, 1, 7) and len(data) == 72
    family, protocol, _ext, _pad, states = struct.unpack_from("=BBBBI", data, 16)
    assert (family, protocol, states) == (socket.AF_INET, socket.IPPROTO_TCP, 0xFFFFFFFF)
    sport, dport, src, dst = struct.unpack_from("!HH16s16s", data, 24)
    assert (sport, dport) == (40000, 1079)
    assert src == bytes([127, 0, 0, 1]) + bytes(12) and dst == bytes([127, 0, 0, 2]) + bytes(12)
    assert struct.unpack_from("=III", data, 60) == (0, 0xFFFFFFFF, 0xFFFFFFFF)


def test_request_for_ipv6_and_mapped_peers_uses_the_ipv6_family():
    for client in ("::1", "::ffff:127.0.0.1"):
        data = encode_request((client, 1), ("::1", 2))
        assert data[16] == socket.AF_INET6
        assert data[28:44] == socket.inet_pton(socket.AF_INET6, client)


def test_reply_gives_the_owner():
    assert decode_reply(reply(1000, 4242), *ENDS) == 1000
    assert decode_reply(reply(0, 77), *ENDS) == 0, "root with a real socket is root"


def test_a_closed_or_half_open_socket_is_unknown_never_root():
    assert decode_reply(reply(0, 0), *ENDS) is None


def test_an_unmapped_uid_is_unknown():
    assert decode_reply(reply(65534, 5), *ENDS) is None


def test_a_reply_about_another_socket_is_unknown():
    # Where no connection has the four-tuple, the kernel answers with a socket
    # listening on the client's port: anyone's, root's included.
    listening = struct.pack("!HH16s16s", 40000, 0, bytes([127, 0, 0, 1]) + bytes(12), bytes(16))
    assert decode_reply(reply(0, 77, sockid=listening), *ENDS) is None
    other_server = struct.pack("!H", 1080)
    assert decode_reply(reply(1000, 77, sockid=ASKED[:2] + other_server + ASKED[4:]),
                        *ENDS) is None
    assert decode_reply(reply(1000, 77), ("::ffff:127.0.0.1", 40000),
                        ("::ffff:127.0.0.1", 1079)) == 1000, "a mapped end is its IPv4 address"


def test_not_found_is_unknown():
    assert decode_reply(error_reply(errno.ENOENT), *ENDS) is None


def test_other_errors_and_garbage_raise_the_modules_error():
    with pytest.raises(SockDiagError):
        decode_reply(error_reply(errno.EINVAL), *ENDS)
    with pytest.raises(peer_owner.NoSockDiag):
        decode_reply(error_reply(errno.EOPNOTSUPP), *ENDS)
    with pytest.raises(SockDiagError):
        decode_reply(reply(1000, 1, kind=3), *ENDS)
    with pytest.raises(SockDiagError):
        decode_reply(reply(1000, 1)[:40], *ENDS)


#: Replies: random bytes, and netlink messages of any type and length field around a
#: body of any bytes, so that random input gets past the header's checks.
REPLIES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda kind, flags, delta, body: struct.pack(
        "=IHHII", max(0, min(2 ** 32 - 1, 16 + len(body) + delta)), kind, flags, 1, 0) + body,
        st.one_of(st.sampled_from([2, SOCK_DIAG_BY_FAMILY]), st.integers(0, 2 ** 16 - 1)),
        st.integers(0, 2 ** 16 - 1), st.sampled_from([0, 0, 0, -1, 1, -16, 2 ** 31]),
        st.binary(max_size=120)))


@given(REPLIES)
def test_any_reply_decodes_or_raises_the_modules_error(data):
    try:
        uid = decode_reply(data, *ENDS)
    except SockDiagError:
        return
    assert uid is None or 0 <= uid < 2 ** 32


@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1), st.binary(max_size=16))
def test_a_reply_gives_its_uid_unless_the_socket_is_closed_or_unmapped(uid, inode, trailer):
    expected = None if inode == 0 or uid == 65534 else uid
    assert decode_reply(reply(uid, inode) + trailer, *ENDS) == expected


@given(st.integers(-2 ** 31 + 1, 2 ** 31 - 1))
def test_an_error_reply_is_not_found_or_the_modules_error(code):
    try:
        assert decode_reply(error_reply(code), *ENDS) is None
        assert code == errno.ENOENT
    except peer_owner.NoSockDiag as exc:
        assert exc.errno == code and code in peer_owner._NO_SOCK_DIAG
    except SockDiagError as exc:
        assert exc.errno == code and code not in peer_owner._NO_SOCK_DIAG


def proc_lines(addresses, text):
    """/proc/net/tcp or tcp6 lines: fields that look like its own, with addresses where
    the kernel writes them and of the width it writes in that file, and ``text``."""
    fields = st.sampled_from(["sl", "01", "1000", "0", "2222", "zz:zz", ":", "-1", "1e3"]
                             + addresses)
    line = st.builds(lambda first, ends, rest: " ".join([first] + ends + rest),
                     st.sampled_from(["0:", "sl", "1:"]),
                     st.lists(st.sampled_from(addresses), min_size=2, max_size=2),
                     st.lists(fields, max_size=12))
    return st.lists(st.one_of(line, text), max_size=3)


#: tcp6's addresses are always 32 hex digits: a shorter one reads as an IPv4 address,
#: which has no ``ipv4_mapped``, so random text is only tried as tcp.
PROC_TABLES = st.one_of(
    st.tuples(st.just(4), proc_lines(["0100007F:0437", "0100007F:9C40", "00000000:0000"],
                                     st.text(max_size=40))),
    st.tuples(st.just(6), proc_lines(["0000000000000000FFFF00000100007F:9C42",
                                      "0000000000000000FFFF00000100007F:0437",
                                      "00000000000000000000000000000000:0000"], st.nothing())))


@given(PROC_TABLES)
def test_any_proc_table_gives_an_owner_or_none(table):
    version, lines = table
    for client in (("127.0.0.1", 40000), ("::ffff:127.0.0.1", 40002)):
        uid = owner_in_proc_table(lines, client, ("127.0.0.1", 1079), version)
        assert uid is None or isinstance(uid, int)


PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0437 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1
   1: 0100007F:9C40 0100007F:0437 01 00000000:00000000 00:00000000 00000000  1000        0 2222 1
   2: 0100007F:9C41 0100007F:0437 06 00000000:00000000 03:00000F8B 00000000     0        0 0 3
"""

PROC_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000100007F:9C42 0000000000000000FFFF00000100007F:0437 01 00000000:00000000 00:00000000 00000000  1001        0 3333 1
   1: 00000000000000000000000001000000:9C43 00000000000000000000000001000000:0437 01 00000000:00000000 00:00000000 00000000  1002        0 4444 1
"""  # noqa: E501 (the kernel's lines as they are)


@pytest.mark.skipif(struct.pack("=I", 1)[0] != 1, reason="the sample tables are little-endian")
def test_proc_tables_are_read_by_the_exact_four_tuple():
    lines = PROC_TCP.splitlines()
    assert owner_in_proc_table(lines, ("127.0.0.1", 40000), ("127.0.0.1", 1079), 4) == 1000
    assert owner_in_proc_table(lines, ("127.0.0.1", 1079), ("127.0.0.1", 40000), 4) is None
    assert owner_in_proc_table(lines, ("127.0.0.1", 40001), ("127.0.0.1", 1079), 4) is None, \
        "TIME_WAIT: uid 0, inode 0"
    six = PROC_TCP6.splitlines()
    assert owner_in_proc_table(six, ("::ffff:127.0.0.1", 40002), ("::ffff:127.0.0.1", 1079),
                               6) == 1001
    assert owner_in_proc_table(six, ("::1", 40003), ("::1", 1079), 6) == 1002


#: Where a test's server listens, and the address its client connects to.
ENDPOINTS = pytest.mark.parametrize(
    "endpoints", [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "127.0.0.1")],
    ids=["ipv4", "ipv6", "ipv4-mapped"])


def connected(endpoints, reuse_port=False):
    """A real loopback connection: the server's end, the client's end; with
    ``reuse_port``, a socket of this account may bind the client's port beside it."""
    host, target = endpoints
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        client.bind((target, 0))
        client.connect((target, listener.getsockname()[1]))
        server, _peer = listener.accept()
    return server, client


@pytest.fixture
def connection(endpoints):
    server, client = connected(endpoints)
    yield server, client
    server.close()
    client.close()


@ENDPOINTS
def test_the_kernel_names_the_clients_owner(connection):
    server, _client = connection
    ends = (server.getpeername(), server.getsockname())
    assert owner_by_sock_diag(*ends) == os.geteuid()
    assert owner_by_proc(*ends) == os.geteuid()


@ENDPOINTS
def test_a_client_gone_is_unknown(connection):
    server, client = connection
    ends = (server.getpeername(), server.getsockname())
    client.close()
    assert owner_by_sock_diag(*ends) is None
    assert owner_by_proc(*ends) is None


@ENDPOINTS
def test_a_client_gone_is_unknown_though_its_port_now_listens(endpoints):
    """A client that closes and listens on the port it connected from (or another
    account that does) is not taken for the owner of the connection it left. The port
    is taken before the client closes, so that no other connection of the machine gets
    it in between."""
    server, client = connected(endpoints, reuse_port=True)
    with server, socket.socket(client.family) as taken:
        ends = (server.getpeername(), server.getsockname())
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(client.getsockname()[:2])
        taken.listen()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset: no TIME_WAIT keeps the port
        assert owner_by_sock_diag(*ends) is None
        assert owner_by_proc(*ends) is None


def test_unix_peer_credentials():
    a, b = socket.socketpair()
    with a, b:
        assert owner_of_unix_peer(a) == os.geteuid()
