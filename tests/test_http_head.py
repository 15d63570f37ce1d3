"""The HTTP request head parser shared by the web directory and the metrics endpoint: the
forms it takes, what it refuses and with which status, and properties over any bytes."""

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fingerd.serving import http_head
from fingerd.serving.http_head import (
    MAX_HEAD_BYTES,
    Head,
    HeadError,
    common_head,
    read_head,
    request_method,
    take_head,
    take_request,
)
from tests.support.fuzzing import tokens


def head(data, eof=False):
    return take_head(data, eof)


def status_of(data, eof=False):
    with pytest.raises(HeadError) as caught:
        take_head(data, eof)
    return caught.value.status


def test_a_curl_request():
    assert head(b"GET /api/users/alice HTTP/1.1\r\nHost: 127.0.0.1:8079\r\n"
                b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n") == Head(
        "GET", "/api/users/alice", "", (1, 1),
        (("host", "127.0.0.1:8079"), ("user-agent", "curl/7.88.1"), ("accept", "*/*")))


def test_http_1_0_needs_no_host_and_lines_may_end_in_a_bare_lf():
    assert head(b"HEAD /users?name=bob HTTP/1.0\n\n") == Head("HEAD", "/users", "name=bob",
                                                           (1, 0), ())


def test_needs_more_until_the_blank_line():
    assert head(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert head(b"GET / HTTP/1.1\r\nHost: x\r\n\r") is None


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.2\r\n", b"GET / HTTP/1.1 x\r\nHost: a\r\n", b"GET /\r\n",
    b"\r\n\r\n GET", b"\x16\x03\x01", b"GET  /", b"GET /\r", b"GET / HTTP/1.1 ",
    b"GET / HTTP/11", b"GET / XTTP", b"\r\r",
])
def test_a_request_line_that_cannot_be_one_is_400_before_the_head_ends(data):
    with pytest.raises(HeadError) as error:
        take_head(data, False)
    assert (error.value.status, str(error.value)) == (400, "malformed request line")


@pytest.mark.parametrize("data", [
    b"", b"\r", b"\r\n\r", b"G", b"GET", b"GET ", b"GET /x", b"GET /x ", b"GET /x HTTP/",
    b"GET /x HTTP/1.", b"GET /x HTTP/1.1", b"GET /x HTTP/1.1\r", b"GET /x HTTP/1.1\r\nHo",
    b"GET /x HTTP/2.", b"\n\r\nHEAD /",
])
def test_what_may_yet_become_a_request_line_waits(data):
    assert take_head(data, False) is None


def test_bytes_after_the_head_are_not_read():
    assert head(b"GET / HTTP/1.0\r\n\r\nGET /other HTTP/1.0\r\n\r\n").path == "/"


def test_blank_lines_before_the_request_line_are_skipped():
    assert head(b"\r\n\n\r\nGET / HTTP/1.0\r\n\r\n").path == "/"


def test_field_values_lose_surrounding_blanks_and_keep_inner_ones():
    got = head(b"GET / HTTP/1.1\r\nHost:x\r\nIf-None-Match: \t\"a\", W/\"b\" \r\n"
               b"X-Empty:\r\nX-Obs: caf\xe9\r\n\r\n")
    assert got.field("if-none-match") == '"a", W/"b"'
    assert got.field("x-empty") == "" and got.field("x-obs") == "caf\xe9"
    assert got.field("absent") is None


@pytest.mark.parametrize("host", [b"", b"example.org", b"example.org:8079", b"127.0.0.1:80",
                                  b"[::1]", b"[2001:db8::1]:8079", b"xn--caf-dma.example",
                                  b"a%41b", b"h:"])
def test_a_host_is_a_name_or_an_address_and_a_port(host):
    assert head(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").field("host") == \
        host.decode()


def test_repeated_fields_are_joined():
    got = head(b"GET / HTTP/1.0\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\n\r\n")
    assert got.field("if-none-match") == '"a", "b"'


@pytest.mark.parametrize("target, path, query", [
    (b"/", "/", ""),
    (b"/users/al%69ce?x=1&y", "/users/al%69ce", "x=1&y"),
    (b"http://example.org/users/alice?q", "/users/alice", "q"),
    (b"HTTP://example.org:8079", "/", ""),
    (b"http://example.org?name=bob", "/", "name=bob"),
    (b"*", "*", ""),
])
def test_request_targets(target, path, query):
    got = head(b"OPTIONS " + target + b" HTTP/1.0\r\n\r\n")
    assert (got.path, got.query) == (path, query)


def test_any_token_is_a_method_and_minor_versions_above_1_are_read():
    got = head(b"BREW /pot HTTP/1.7\r\nHost: x\r\n\r\n")
    assert (got.method, got.version) == ("BREW", (1, 7))


@pytest.mark.parametrize("data", [
    b"garbage\r\n\r\n",
    b"GET /\r\n\r\n",                                      # HTTP/0.9
    b"GET / http/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1\r\n\r\n",
    b"GET / HTTP/1.10\r\n\r\n",
    b"GET  / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0 \r\n\r\n",
    b" GET / HTTP/1.0\r\n\r\n",
    b"GET\t/ HTTP/1.0\r\n\r\n",
    b"G(T / HTTP/1.0\r\n\r\n",
    b"GET users HTTP/1.0\r\n\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.0\r\n\r\n",
    b"GET /#top HTTP/1.0\r\n\r\n",
    b"GET ftp:/x HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\rX: y\r\n\r\n",                        # bare CR
    b"GET / HTTP/1.0\r\r\n\r\n",
    b"GET / HTTP/1.0\r\nNo colon\r\n\r\n",
    b"GET / HTTP/1.0\r\nName : value\r\n\r\n",
    b"GET / HTTP/1.0\r\n: value\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: a\r\n folded\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: \x1b[2J\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                              # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: user@example.org\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET / HTTP/1.0\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.0\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
])
def test_malformed_heads_are_400(data):
    assert status_of(data) == 400


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"])
def test_other_major_versions_are_505(version):
    assert status_of(b"GET / " + version + b"\r\n\r\n") == 505


def test_a_head_of_exactly_8_kib_is_read_and_one_byte_more_is_431():
    start = b"GET / HTTP/1.0\r\nX: "
    exact = start + b"x" * (MAX_HEAD_BYTES - len(start) - 4) + b"\r\n\r\n"
    assert len(exact) == MAX_HEAD_BYTES and head(exact).path == "/"
    assert status_of(exact[:-4] + b"x\r\n\r\n") == 431


def test_an_endless_head_is_431_as_soon_as_it_passes_the_bound():
    assert head(b"GET / HTTP/1.0\r\nX: " + b"x" * (MAX_HEAD_BYTES - 20)) is None
    assert status_of(b"GET / HTTP/1.0\r\nX: " + b"x" * MAX_HEAD_BYTES) == 431
    assert status_of(b"\r\n" * (MAX_HEAD_BYTES // 2)) == 431


def test_at_the_end_of_input_an_unended_head_is_400_and_nothing_is_no_request():
    assert status_of(b"GET / HTTP/1.0\r\n", eof=True) == 400
    assert head(b"", eof=True) is None and head(b"\r\n", eof=True) is None


@pytest.mark.parametrize("data, method", [
    (b"HEAD / HTTP/1.1\r\n\r\n", "HEAD"),                           # no Host
    (b"\r\nBREW / HTTP/2.0\r\n\r\n", "BREW"),
    (b"HEAD / HTTP/1.0\r\nX: a\rb\r\n\r\n", "HEAD"),                  # a bare CR after it
    (b"HEAD / HTTP/1.0\nX: " + b"x" * MAX_HEAD_BYTES, "HEAD"),
    (b"HEAD /" + b"x" * MAX_HEAD_BYTES, "HEAD"),                      # not there whole, begun
    (b"HEAD /" + b"\x01" * MAX_HEAD_BYTES, None),                     # begun as no request line
    (b"HEAD / HTTP/1.0\rX: y\r\n\r\n", None),                         # a bare CR in it
    (b"HEAD  / HTTP/1.0\r\n\r\n", None),
])
def test_an_error_names_the_method_of_a_request_line_well_formed_or_begun_so(data, method):
    error = take_request(data, False)
    assert isinstance(error, HeadError) and error.method == method


@pytest.mark.parametrize("data, method", [
    (b"", None), (b"\r\n", None), (b"HEA", None), (b"HEAD", None),  # nothing tells it yet
    (b"HEAD ", "HEAD"), (b"\r\nHEAD /users/al", "HEAD"), (b"HEAD /x HTT", "HEAD"),
    (b"HEAD / HTTP/1.0\r", "HEAD"), (b"GET /x", "GET"),             # begun, not ended
    (b"HEAD / HTTP/1.0\r\nHo", "HEAD"),                              # whole, well formed
    (b"HEAD /\r\n\r\n", None), (b"HEAD /x\x00", None),              # no request line
    (b"HEAD  /", None), (b"HEAD / HTTP/1.0 x", None),
])
def test_the_method_is_known_once_the_request_line_is_begun_as_one(data, method):
    """What a busy answer, or an error before the line ended, goes by (RFC 9110 9.3.2:
    the answer to HEAD has no body, whatever its status)."""
    assert request_method(data) == method


def test_take_request_gives_errors_as_values_and_an_empty_list_for_nothing():
    assert take_request(b"GET / HTTP/1.0\r\n\r\n", False).path == "/"
    assert take_request(b"GET / HTTP/1.0\r\n", False) is None
    assert take_request(b"", True) == []
    error = take_request(b"nonsense\r\n\r\n", False)
    assert isinstance(error, HeadError) and error.status == 400


# The shortcut for common heads.

BENCHMARK = b"GET /users/alice HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CURL = (b"GET /api/users/alice HTTP/1.1\r\nHost: 127.0.0.1:8079\r\n"
        b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
BROWSER = (b"GET /users?name=bob HTTP/1.1\r\nHost: localhost:8079\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
           b"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
           b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
           b"Connection: keep-alive\r\nIf-None-Match: \"abc\"\r\nSec-Fetch-User: ?1\r\n"
           b"Priority: u=0, i\r\n\r\n")


@pytest.mark.parametrize("data", [BENCHMARK, CURL, BROWSER, b"HEAD / HTTP/1.0\r\n\r\n",
                                  BENCHMARK + b"a body"])
def test_common_heads_are_read_in_one_pass_as_the_strict_reading_reads_them(data):
    assert common_head(data) is not None
    assert common_head(data) == read_head(data, False) == take_head(data, False)


@pytest.mark.parametrize("data", [
    b"\r\n" + BENCHMARK,                                     # a blank line first
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",                      # another method
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",                # absolute form
    b"GET / HTTP/1.1\nHost: x\n\n",                              # bare LF
    b"GET / HTTP/1.1\r\nHost:x\r\n\r\n",                         # no blank after the colon
    b"GET / HTTP/1.1\r\nHost: x \r\n\r\n",                       # a trailing blank
    b"GET / HTTP/1.1\r\nHost: x\r\nX:  two  blanks\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: caf\xe9\r\n\r\n",            # obs-text
    b"GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n",                # a rarer token character
])
def test_other_heads_are_left_to_the_strict_reading(data):
    assert common_head(data) is None
    assert take_head(data, False) == read_head(data, False) is not None


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                              # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nContent-Length: x1\r\n\r\n", 400),
    (b"GET /#top HTTP/1.0\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nX: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
])
def test_what_the_strict_reading_refuses_the_shortcut_refuses_alike_or_leaves_to_it(data,
                                                                                    status):
    refused = outcome_of(lambda d: read_head(d, False), data)
    assert refused[:2] == ("error", status)
    assert outcome_of(common_head, data) in (None, refused)
    assert outcome_of(lambda d: take_head(d, False), data) == refused


def outcome_of(read, data):
    """``read(data)``'s Head or None, or ("error", status, message)."""
    try:
        return read(data)
    except HeadError as exc:
        return ("error", exc.status, str(exc))


#: Common heads as clients send them: GET or HEAD, plain fields, CRLF.
common_heads = st.builds(
    lambda method, target, minor, fields: b"%s %s HTTP/1.%s\r\n%s\r\n" % (
        method, target, minor, b"".join(b"%s: %s\r\n" % field for field in fields)),
    st.sampled_from([b"GET", b"HEAD"]),
    tokens([b"users", b"/", b"?", b"name=a", b"&", b"%41", b"~"], 5).map(b"/".__add__),
    st.sampled_from([b"0", b"1"]),
    st.lists(st.tuples(
        st.sampled_from([b"Host", b"host", b"User-Agent", b"If-None-Match", b"Content-Length",
                         b"X-9"]),
        st.lists(tokens([b"a", b"1", b'"b"', b"*", b"/", b"W/", b",", b";q=0.8"], 3)
                 .filter(bool), min_size=1, max_size=3).map(b" ".join)), max_size=5))
#: What may spoil a common head, put in anywhere.
spoilers = st.sampled_from([b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b"#", b"?", b":", b"_",
                            b"\x7f", b"\xe9", b"\x00", b"HTTP/1.1", b"x" * MAX_HEAD_BYTES])


@given(common_heads, st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(0, 2),
                                                    spoilers)), st.binary(max_size=12))
def test_whatever_the_shortcut_reads_or_refuses_the_strict_reading_reads_or_refuses_alike(
        head, spoilt, rest):
    """A common head, spoilt at one place or not, then whatever comes after it."""
    if spoilt is not None:
        at, cut, spoiler = spoilt
        at %= len(head) + 1
        head = head[:at] + spoiler + head[at + cut:]
    data = head + rest
    common = outcome_of(common_head, data)
    strict = outcome_of(lambda d: read_head(d, False), data)
    assert common in (None, strict)
    assert outcome_of(lambda d: take_head(d, False), data) == strict


# Waiting for the blank line.

#: Buffers of CRs, LFs and pieces of heads: blank lines before the request, bare CRs
#: among them, heads ended or not, common or not, near the bound or over it.
blank_and_head_pieces = tokens([b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r", b" ", b"X:y", b"Host: x",
                                b"GET / HTTP/1.1", b"HEAD /users/alice HTTP/1.0", BENCHMARK,
                                b"x" * 2000], 16)


@given(blank_and_head_pieces, st.booleans())
def test_waiting_for_the_blank_line_gives_what_both_readings_give(data, eof):
    assert outcome_of(lambda d: take_head(d, eof), data) == \
        outcome_of(lambda d: common_head(d) or read_head(d, eof), data)


@pytest.mark.parametrize("data", [
    BENCHMARK,
    b"\r\n" * 3000 + BENCHMARK,                                   # blank lines first
    b"\n\r\n" + BENCHMARK.replace(b"\r\n", b"\n"),                 # bare LFs: the strict reading
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"x" * 8000 + b"\r\n\r\n",  # near the bound
])
def test_a_head_sent_a_byte_at_a_time_is_read_once_it_is_whole(data, monkeypatch):
    read = []

    def noting(reading):
        def noted(buf, *args):
            read.append(len(buf))
            return reading(buf, *args)
        return noted

    for name in ("common_head", "read_head"):
        monkeypatch.setattr(http_head, name, noting(getattr(http_head, name)))
    for end in range(1, len(data)):
        assert take_head(data[:end], False) is None
    assert take_head(data, False) is not None
    assert read and set(read) == {len(data)}


# The Host field: uri-host [":" port] (RFC 9112 3.2).

#: Host values the grammar allows: a reg-name (of every kind of character it takes),
#: an IPv4 address or an IPv6 one in brackets, then a port or not.
hosts = st.builds(
    bytes.__add__,
    st.one_of(tokens([b"a", b"Z", b"0", b"-", b".", b"_", b"~", b"!", b"$", b"&", b"'", b"(",
                      b")", b"*", b"+", b",", b";", b"=", b"%41", b"%e9"], 12),
              st.ip_addresses(v=4).map(lambda address: str(address).encode()),
              st.ip_addresses(v=6).map(lambda address: f"[{address}]".encode())),
    st.sampled_from([b"", b":", b":80", b":8079"]))
#: What no Host value holds.
not_in_hosts = st.sampled_from([b"@", b"/", b"\\", b"#", b"?", b"[", b"]", b'"', b"<", b"{",
                                b"|", b"^", b"`", b"\xe9", b"%", b"%4", b"%zz"])


@given(hosts, st.sampled_from([b"1.0", b"1.1"]))
def test_any_host_the_grammar_allows_is_read_alike_by_both_readings(host, minor):
    data = b"GET / HTTP/" + minor + b"\r\nHost: " + host + b"\r\n\r\n"
    assert read_head(data, False).field("host") == host.decode("latin-1")
    assert outcome_of(common_head, data) in (None, read_head(data, False))


@given(hosts, st.integers(0, 60), not_in_hosts)
def test_a_host_with_anything_else_in_it_is_400_in_both_readings(host, at, spoiler):
    at %= len(host) + 1
    spoilt = host[:at] + spoiler + host[at:]
    assume(not (spoiler.startswith(b"%") and re.match(rb"%[0-9A-Fa-f]{2}", spoilt[at:])))
    data = b"GET / HTTP/1.1\r\nHost: " + spoilt + b"\r\n\r\n"
    refused = ("error", 400, "an invalid Host field")
    assert outcome_of(lambda d: read_head(d, False), data) == refused
    assert outcome_of(common_head, data) in (None, refused)


# Properties: any bytes, fed whole or in pieces, CRLF or LF.

def outcome(data, chunks=None):
    """What a loop that reads ``data`` in pieces ending at ``chunks`` and then sees the end
    of input makes of it: the Head, ("error", status, message) or None."""
    ends = sorted(set(chunks or ())) + [len(data)]
    try:
        for end in ends:
            got = take_head(data[:end], eof=False)
            if got is not None:
                return got
        return take_head(data, eof=True)
    except HeadError as exc:
        return ("error", exc.status, str(exc))


lines = st.one_of(
    st.sampled_from([b"GET / HTTP/1.1", b"HEAD /users/alice HTTP/1.0", b"POST /x HTTP/1.1",
                     b"GET http://h/api/users?x HTTP/1.1", b"GET / HTTP/2.0", b"",
                     b"Host: example.org", b"If-None-Match: \"abc\"", b"X: a b",
                     b" folded", b"Bad line", b"X:\x00", b"Content-Length: 12"]),
    st.binary(max_size=12))
heads = st.lists(lines, max_size=8)


@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_parse_or_raise_the_modules_own_error(data, eof):
    try:
        got = take_head(data, eof)
    except HeadError as exc:
        assert exc.status in (400, 431, 505)
    else:
        assert got is None or isinstance(got, Head)


@given(heads, st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=20),
       st.lists(st.integers(0, 300), max_size=6))
def test_fed_whole_in_pieces_or_byte_by_byte_a_head_reads_the_same(lines, ending, rest,
                                                                 chunks):
    data = b"".join(line + ending for line in lines) + ending + rest
    whole = outcome(data)
    assert outcome(data, chunks) == whole
    assert outcome(data, range(len(data))) == whole


@given(st.sampled_from([b"GET / HTTP/1.1", b"HEAD /users/alice HTTP/1.0", b"BREW * HTTP/2.0"]),
       heads, st.sampled_from([b"\r\n", b"\n"]), st.booleans())
def test_an_error_after_a_well_formed_request_line_names_its_method(request_line, lines,
                                                                    ending, eof):
    data = b"".join(line + ending for line in [request_line, *lines]) + ending
    got = take_request(data, eof)
    if isinstance(got, HeadError):
        assert got.method == request_line.split(b" ")[0].decode()


@given(heads)
def test_crlf_and_bare_lf_endings_read_the_same(lines):
    crlf = b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    lf = b"".join(line + b"\n" for line in lines) + b"\n"
    if not any(b"\r" in line or b"\n" in line for line in lines):
        assert outcome(crlf) == outcome(lf)


@given(st.integers(MAX_HEAD_BYTES - 40, MAX_HEAD_BYTES + 40),
       st.lists(st.integers(0, MAX_HEAD_BYTES + 40), max_size=4))
def test_the_bound_holds_across_reads(size, chunks):
    start = b"GET / HTTP/1.0\r\nX: "
    data = start + b"x" * max(0, size - len(start) - 4) + b"\r\n\r\n"
    got = outcome(data, chunks)
    assert got == outcome(data)
    assert (got[:2] == ("error", 431)) == (len(data) > MAX_HEAD_BYTES)
