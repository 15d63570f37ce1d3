"""Configuration parsing and validation."""

import codecs
import configparser
import dataclasses
import ipaddress
import os
import re
import string
from itertools import takewhile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.config import (
    SCHEMA,
    SECTIONS,
    Address,
    ConfigError,
    config_text,
    configured_log_file,
    load_config,
    parse_config,
)
from fingerd.config_keys import HIGH_BYTES_POLICIES, valid_host
from tests.support import ROOT


def errors(text, path="/etc/fingerd/fingerd.conf"):
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    return info.value.errors


def test_empty_file_gives_every_default():
    config = parse_config("", "/etc/fingerd/fingerd.conf")
    assert config.user == "nobody"
    assert config.group == ""
    assert config.pidfile == "/run/fingerd.pid"
    assert config.users_file == "/etc/fingerd/users"
    assert config.reload_interval == 30
    assert config.threads == 16
    assert config.max_connections == 256
    assert config.request_timeout == 10
    assert config.backlog == 1024
    assert config.log_file == ""
    assert config.finger_listen == (Address("0.0.0.0", 79),)
    assert config.list_users is False
    assert config.forwarding is False
    assert config.forward_allow == ()
    assert config.system_users is False
    assert config.min_uid == 1000
    assert config.setter_listen == (Address("127.0.0.1", 1079),)
    assert config.metrics_listen == (Address("127.0.0.1", 9179),)
    assert config.max_per_source == 32
    assert config.max_uid == 4294967293
    assert (config.setter_policy, config.setter_admin_group, config.setter_socket) == (
        "own", "", "")
    assert config.web_listen == ()
    loopback = (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("::1"))
    for section in ("finger", "web"):
        assert getattr(config, f"{section}_proxy_protocol") is False
        assert getattr(config, f"{section}_proxy_from") == loopback
        assert getattr(config, f"{section}_allow_from") == ()
    assert (config.store_backend, config.redis_url, config.redis_prefix) == (
        "file", "redis://127.0.0.1:6379/0", "fingerd")


def test_the_shipped_example_is_valid_and_names_every_key():
    path = os.path.join(ROOT, "init", "fingerd.conf")
    load_config(path)
    text = open(path).read()
    for section, key, *_ in SCHEMA:
        assert f"[{section}]" in text and f"\n{key} =" in text, (section, key)


def test_the_shipped_example_marks_each_value_that_is_not_the_default():
    """Its first line says: every key, with its default unless marked."""
    defaults = {(section, key): default for section, key, default, *_ in SCHEMA}
    marked = []
    section = ""
    lines = open(os.path.join(ROOT, "init", "fingerd.conf")).read().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
        elif line[:1].isalpha():
            key, _, rest = line.partition("=")
            value, _, comment = rest.partition(";")
            following = takewhile(lambda text: text.startswith(" "), lines[number + 1:])
            if value.strip() != defaults[section, key.strip()]:
                marked.append(("default" in comment + "".join(following), section, key))
    assert marked and all(says for says, *_ in marked), marked


def test_inline_comments_and_values():
    config = parse_config("[fingerd]\nthreads = 4   ; small\ngroup =   # none\n"
                          "[finger]\nlist_users = yes\nlisten = 127.0.0.1:7979, [::1]:7979\n",
                          "/x/f.conf")
    assert config.threads == 4
    assert config.group == ""
    assert config.list_users is True
    assert config.finger_listen == (Address("127.0.0.1", 7979), Address("::1", 7979))
    assert str(config.finger_listen[1]) == "[::1]:7979"


def test_relative_paths_are_taken_from_the_configuration_directory():
    config = parse_config("[fingerd]\nusers_file = users\n", "/etc/fingerd/fingerd.conf")
    assert config.users_file == "/etc/fingerd/users"


def test_metrics_can_be_switched_off():
    assert parse_config("[metrics]\nlisten =\n", "f").metrics_listen == ()


def test_unknown_key_names_file_line_and_key():
    assert errors("[fingerd]\nuser = nobody\nthread = 4\n") == [
        "/etc/fingerd/fingerd.conf:3: [fingerd] unknown key 'thread'; did you mean 'threads'?"]


def test_the_setter_has_no_proxy_protocol_to_turn_on():
    """Contract section 10: the setter never takes a PROXY header; it trusts the kernel's
    word on its peer (section 6), which a proxy would replace by its own."""
    assert errors("[setter]\nproxy_protocol = yes\n") == [
        "/etc/fingerd/fingerd.conf:2: [setter] unknown key 'proxy_protocol'"]


def test_unknown_section_names_its_line():
    assert errors("\n[finger]\n[fnord]\nx = 1\n")[0].startswith(
        "/etc/fingerd/fingerd.conf:3: unknown section [fnord]")


@pytest.mark.parametrize("section, key, value, message", [
    ("fingerd", "threads", "many", "expected an integer from 1 to 1024"),
    ("fingerd", "threads", "0", "expected an integer from 1 to 1024"),
    ("fingerd", "max_connections", "-1", "expected an integer"),
    ("fingerd", "reload_interval", "soon", "expected seconds"),
    ("fingerd", "request_timeout", "0", "expected seconds"),
    ("fingerd", "backlog", "1e9", "expected an integer"),
    ("fingerd", "user", "", "expected an account name"),
    ("fingerd", "group", "a b", "expected an account name"),
    ("finger", "list_users", "maybe", "expected yes or no"),
    ("finger", "listen", "", "expected at least one HOST:PORT"),
    ("finger", "listen", "localhost:79", "expected HOST:PORT with an IP address"),
    ("finger", "listen", "0.0.0.0:0", "port 0 out of range 1 to 65535"),
    ("finger", "listen", "0.0.0.0:65536", "port 65536 out of range 1 to 65535"),
    ("finger", "listen", "::1:79", "expected HOST:PORT"),
    ("finger", "listen", "1.2.3.4:79, 1.2.3.4:79", "listed twice"),
    ("finger", "min_uid", "-5", "expected an integer"),
    ("finger", "forward_allow", "a b", "expected host names or addresses"),
    ("finger", "forward_allow", "example.com, host:79", "got 'host:79'"),
    ("finger", "forward_allow", "a..b", "got 'a..b'"),
    ("finger", "forward_allow", "-a.example", "got '-a.example'"),
    ("setter", "listen", "0.0.0.0:1079", "not a loopback address"),
    ("metrics", "listen", "127.0.0.1", "expected HOST:PORT"),
    ("output", "high_bytes", "maybe", "expected one of pass, strip, caret"),
    ("output", "replace", "no arrow", "expected OLD => NEW"),
    ("finger", "plan_files", ".plan, ../etc/shadow", "expected file names"),
    ("finger", "forward_timeout", "0", "expected seconds"),
    ("finger", "allow_from", "192.0.2.0/24, 10.0.0.1/8", "got '10.0.0.1/8'"),
    ("web", "allow_from", "127.0.0.1, localhost", "expected IP addresses or networks, "
                                                  "got 'localhost'"),
    ("finger", "proxy_from", "::1, 300.0.0.1", "got '300.0.0.1'"),
    ("setter", "socket", "/run/" + "d" * 96 + "/s.sock",
     "a Unix socket's path has at most 107 bytes; /run/dddd"),
])
def test_wrong_values_name_file_line_and_key(section, key, value, message):
    found = errors(f"# comment\n[{section}]\n{key} = {value}\n")
    assert len(found) == 1
    assert found[0].startswith(f"/etc/fingerd/fingerd.conf:3: [{section}] {key}: ")
    assert message in found[0]


def test_a_setter_socket_path_may_have_the_107_bytes_a_unix_socket_s_may():
    longest = "/run/" + "d" * 95 + "/s.sock"
    assert len(longest) == 107
    assert parse_config(f"[setter]\nsocket = {longest}\n", "/f.conf").setter_socket == longest
    assert errors(f"[setter]\nsocket = {longest}x\n") != []


def test_an_unknown_key_far_from_any_known_one_suggests_nothing():
    assert errors("[fingerd]\nfrobnicate = 1\n") == [
        "/etc/fingerd/fingerd.conf:2: [fingerd] unknown key 'frobnicate'"]


@pytest.mark.parametrize("finger, other, clash", [
    ("127.0.0.1:7979", "[setter]\nlisten = 127.0.0.1:7979", "127.0.0.1:7979"),
    ("0.0.0.0:7979", "[setter]\nlisten = 127.0.0.1:7979", "0.0.0.0:7979"),
    ("127.0.0.1:7979, [::1]:7980", "[metrics]\nlisten = [::]:7980", "[::1]:7980"),
    ("0.0.0.0:8079", "[web]\nlisten = 127.0.0.1:8079", "0.0.0.0:8079"),
])
def test_two_services_on_one_address_are_refused(finger, other, clash):
    found = errors(f"[finger]\nlisten = {finger}\n{other}\n")
    assert len(found) == 1
    assert found[0].startswith("/etc/fingerd/fingerd.conf:4: [")
    assert found[0].endswith(f"is also [finger]'s {clash}")


def test_services_on_one_port_of_different_addresses_or_families_are_fine():
    parse_config("[finger]\nlisten = 127.0.0.1:7979, [::]:7980\n"
                 "[setter]\nlisten = 127.0.0.2:7979\n[metrics]\nlisten = 127.0.0.1:7980\n",
                 "/f.conf")


def test_every_error_is_reported_at_once():
    assert len(errors("[fingerd]\nthreads = x\nbacklog = y\nfoo = 1\n")) == 3


def test_syntax_error_names_its_line():
    assert errors("[fingerd]\nthreads 4\n") == [
        "/etc/fingerd/fingerd.conf:2: cannot parse 'threads 4'"]


def test_an_indented_key_is_named_at_its_line():
    assert errors("[fingerd]\n  thread = 4\n") == [
        "/etc/fingerd/fingerd.conf:2: [fingerd] unknown key 'thread'; did you mean 'threads'?"]


def test_key_before_any_section():
    assert errors("threads = 4\n")[0].startswith("/etc/fingerd/fingerd.conf:1: ")


def test_duplicate_key():
    assert errors("[fingerd]\nthreads = 4\nthreads = 5\n") == [
        "/etc/fingerd/fingerd.conf:3: [fingerd] threads given twice"]


def test_where_names_the_line_of_a_key():
    config = parse_config("[fingerd]\n\nuser = daemon\n", "/f.conf")
    assert config.where("fingerd", "user") == "/f.conf:3"
    assert config.where("fingerd", "group") == "/f.conf"


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(str(tmp_path / "nope.conf"))


def test_non_utf8_file_names_its_line(tmp_path):
    path = tmp_path / "f.conf"
    path.write_bytes(b"[fingerd]\nuser = \xff\n")
    with pytest.raises(ConfigError, match=r"f.conf:2: not valid UTF-8"):
        load_config(str(path))


def test_a_byte_order_mark_before_the_first_line_is_read_as_no_part_of_it(tmp_path):
    """As some Windows editors save the file: it loads as it would without the mark, and
    a failed start still finds its log_file; a mark elsewhere is named in the error."""
    path = tmp_path / "fingerd.conf"
    text = "[fingerd]\nthreads = 4\nlog_file = fingerd.log\n"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    assert load_config(str(path)) == parse_config(text, str(path))
    assert configured_log_file(str(path)) == str(tmp_path / "fingerd.log")
    assert errors("[fingerd]\n\ufeffthreads = 4\n") == [
        "/etc/fingerd/fingerd.conf:2: [fingerd] unknown key '\\ufeffthreads'; "
        "did you mean 'threads'?"]


def test_source_forwarding_and_output_defaults():
    config = parse_config("", "/etc/fingerd/fingerd.conf")
    assert config.forward_timeout == 10
    assert config.plan_files == (".plan", ".project", ".pgpkey")
    assert config.plan_max_bytes == 16384
    assert config.utmp_file == "/var/run/utmp"
    assert config.high_bytes == "pass"
    assert config.replacements == ()
    assert config.access_log is False and config.log_queries is False


def test_replacements_one_a_line():
    config = parse_config("[output]\nhigh_bytes = caret\nreplace =\n    secret => [x]\n"
                          "    Tuesday => Tue\n", "f")
    assert config.replacements == (("secret", "[x]"), ("Tuesday", "Tue"))
    assert config.high_bytes == "caret"


PATH = "/etc/fingerd/fingerd.conf"
KEYS = sorted({key for _, key, *_ in SCHEMA})
#: Values of every kind the keys take, and values that are none of them.
VALUES = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "4", "1e3", "0x10", "nan", "inf", "yes", "No", "on",
                     "127.0.0.1:79", "[::1]:79", "::1:79", "0.0.0.0:0", "[::]:65536", "a, b", ",",
                     "own", "any", "pass", "caret", "x => y", "..", "/tmp/x", "nobody", "x$",
                     "%(x)s", "a # b", "a ; b", "[fingerd]", "::ffff:1.2.3.4",
                     "::ffff:0:0/96", "::ffff:1.2.3.0/120, ::1"]),
    st.text(max_size=20))
ONE_LINE_VALUES = VALUES.map(lambda value: value.replace("\n", " ").replace("\r", " "))
LINES = st.one_of(
    st.sampled_from(SECTIONS).map("[{}]".format),
    st.sampled_from(["[]", "[nope]", "[fingerd", "fingerd]", "[ fingerd ]", "[FINGERD]",
                     "[fingerd] x", "[\0]"]),
    st.builds("{}{}{}{}".format, st.sampled_from(["", "", " ", "\t"]),
              st.one_of(st.sampled_from(KEYS), st.sampled_from(["", "nope", "THREADS", "a b"])),
              st.sampled_from([" = ", "=", ": ", " : ", " ", " =  "]), VALUES),
    st.sampled_from(["", "# c", "; c", "  # c", "\t"]),
    st.text(max_size=30))
TEXTS = st.one_of(st.text(max_size=200), st.lists(LINES, max_size=10).map("\n".join))


@given(TEXTS)
def test_any_text_is_a_configuration_or_errors_naming_their_lines(text):
    try:
        config = parse_config(text, PATH)
    except ConfigError as exc:
        assert exc.errors
        for error in exc.errors:
            line = re.match(re.escape(PATH) + r":(\d+): ", error)
            assert line and 0 <= int(line.group(1)) <= text.count("\n") + 1, error
    else:
        assert isinstance(config.threads, int) and config.finger_listen
        assert parse_config(config_text(config), PATH) == config


@st.composite
def plain_configurations(draw):
    """The lines of a file of known sections, each once, and their keys, each once,
    with one-line values."""
    lines = []
    for section in draw(st.lists(st.sampled_from(SECTIONS), unique=True, max_size=3)):
        lines.append(f"[{section}]")
        keys = [key for name, key, *_ in SCHEMA if name == section]
        for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=4)):
            lines.append(f"{key} = {draw(ONE_LINE_VALUES)}")
    return lines


def outcome(text):
    """The Config, or the errors without their line numbers."""
    try:
        return parse_config(text, PATH)
    except ConfigError as exc:
        return sorted(error.split(": ", 1)[1] for error in exc.errors)


@given(plain_configurations(), st.lists(st.tuples(st.integers(1, 40), st.sampled_from(
    ["", "  ", "# note", "; note", "  # indented note"])), max_size=6),
    st.lists(st.booleans(), max_size=40), st.sampled_from([" = ", "= ", " : ", "  =\t"]))
def test_comments_blank_lines_and_spacing_change_nothing(lines, inserts, upper, delimiter):
    """Every delimiter ends in a blank: ``key=;x`` holds the value ``;x``, ``key = ;x``
    none, since ; and # begin a comment only after a blank."""
    plain = outcome("\n".join(lines))
    noisy = list(lines)
    for i, line in enumerate(noisy):
        if not line.startswith("["):
            key, _, value = line.partition(" = ")
            shout = i < len(upper) and upper[i]
            noisy[i] = f"{key.upper() if shout else key}{delimiter}{value}  # said {i}"
    for at, extra in sorted(inserts, reverse=True):
        if at <= len(noisy):
            noisy.insert(at, extra)
    assert outcome("\n".join(noisy)) == plain


#: Listening addresses as written, and as read (IP addresses made from numbers, which
#: Hypothesis draws much faster than its ip_addresses()); never a wildcard beside another
#: address of its family and port, which would be refused.
ADDRESSES = st.lists(st.one_of(
    st.tuples(st.integers(0, 2 ** 32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
              st.integers(1, 65535)).map(lambda a: (f"{a[0]}:{a[1]}", Address(*a))),
    st.tuples(st.integers(0, 2 ** 128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
              st.integers(1, 65535)).map(lambda a: (f"[{a[0]}]:{a[1]}", Address(*a)))),
    min_size=1, max_size=4, unique_by=lambda a: a[1]).filter(
        lambda items: not any(a.port == b.port and a.family == b.family and a != b
                              and ipaddress.ip_address(a.host).is_unspecified
                              for _, a in items for _, b in items))
ALNUM = string.ascii_letters + string.digits
LABELS = st.builds(lambda first, middle: first + (middle + "z" if middle else ""),
                   st.text(ALNUM, min_size=1, max_size=5), st.text(ALNUM + "-", max_size=10))
HOSTS = st.one_of(
    st.builds(lambda labels, dot: ".".join(labels) + dot,
              st.lists(LABELS, min_size=1, max_size=4), st.sampled_from(["", "."])),
    st.integers(0, 2 ** 32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2 ** 128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)).upper()))
#: Keys with the values they take as written, and as read: ``(section, key, attribute,
#: strategy of (text, value))``.
TYPED = [
    ("fingerd", "threads", "threads", st.integers(1, 1024).map(lambda n: (str(n), n))),
    ("fingerd", "max_per_source", "max_per_source",
     st.integers(0, 65536).map(lambda n: (f"  {n}\t", n))),
    ("fingerd", "request_timeout", "request_timeout",
     st.floats(0.1, 3600).map(lambda s: (repr(s), s))),
    ("finger", "list_users", "list_users",
     st.sampled_from(sorted(configparser.ConfigParser.BOOLEAN_STATES.items())).map(
         lambda word: (word[0].upper(), word[1]))),
    ("finger", "listen", "finger_listen",
     ADDRESSES.map(lambda items: (", ".join(t for t, _ in items), tuple(a for _, a in items)))),
    ("finger", "forward_allow", "forward_allow",
     st.lists(HOSTS, max_size=4).map(lambda hosts: (",".join(hosts),
                                                    tuple(h.lower() for h in hosts)))),
    ("output", "high_bytes", "high_bytes",
     st.sampled_from(HIGH_BYTES_POLICIES).map(lambda p: (p, p))),
]


@given(st.tuples(*[st.one_of(st.none(), strategy) for *_, strategy in TYPED]))
def test_a_configuration_written_from_valid_values_reads_back_to_them(values):
    """Each key given or not (None): those given read back as the values written."""
    sections = {}
    for (section, key, _, _), value in zip(TYPED, values):
        if value is not None:
            sections.setdefault(section, []).append(f"{key} = {value[0]}\n")
    config = parse_config("".join(f"[{section}]\n" + "".join(lines)
                                  for section, lines in sections.items()), PATH)
    for (_, _, attribute, _), value in zip(TYPED, values):
        if value is not None:
            assert getattr(config, attribute) == value[1]
    assert parse_config(config_text(config), PATH) == config


def test_the_web_directory_is_off_by_default_and_takes_its_own_proxy_settings():
    config = parse_config("", "/f.conf")
    assert config.web_listen == () and config.web_proxy_protocol is False
    config = parse_config("[web]\nlisten = 0.0.0.0:8079, [::]:8079\nproxy_protocol = yes\n"
                          "proxy_from = 10.0.0.0/8\n", "/f.conf")
    assert config.web_listen == (Address("0.0.0.0", 8079), Address("::", 8079))
    assert config.web_proxy_protocol is True
    assert [str(n) for n in config.web_proxy_from] == ["10.0.0.0/8"]
    assert config.finger_proxy_protocol is False


def test_allow_from_serves_every_client_by_default_and_takes_addresses_and_networks():
    config = parse_config("", "/f.conf")
    assert config.finger_allow_from == () and config.web_allow_from == ()
    config = parse_config("[finger]\nallow_from = 192.0.2.0/24, ::1\n"
                          "[web]\nallow_from = 2001:db8::/32,127.0.0.2\n", "/f.conf")
    assert [str(n) for n in config.finger_allow_from] == ["192.0.2.0/24", "::1/128"]
    assert [str(n) for n in config.web_allow_from] == ["2001:db8::/32", "127.0.0.2/32"]
    text = config_text(config)
    assert "\nallow_from = 192.0.2.0/24, ::1\n" in text
    assert parse_config(text, "/f.conf") == config


def test_an_ipv4_mapped_entry_is_the_ipv4_network_it_maps():
    """A client at an IPv4-mapped address is compared as its IPv4 address, so an entry
    written mapped is read as that IPv4 network (fingerd -T shows it so); one wider than
    ::ffff:0:0/96 stays IPv6."""
    config = parse_config("[finger]\nproxy_from = ::ffff:127.0.0.1, ::FFFF:192.0.2.0/120\n"
                          "[web]\nallow_from = ::ffff:0:0/96, ::fffe:0:0/95, ::1\n", PATH)
    assert config.finger_proxy_from == (ipaddress.ip_network("127.0.0.1"),
                                        ipaddress.ip_network("192.0.2.0/24"))
    assert config.web_allow_from == (ipaddress.ip_network("0.0.0.0/0"),
                                     ipaddress.ip_network("::fffe:0:0/95"),
                                     ipaddress.ip_network("::1"))
    text = config_text(config)
    assert "\nproxy_from = 127.0.0.1, 192.0.2.0/24\n" in text
    assert "\nallow_from = 0.0.0.0/0, ::fffe:0:0/95, ::1\n" in text


@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 32))
def test_any_ipv4_mapped_network_reads_as_its_ipv4_network(number, prefix):
    network = ipaddress.IPv4Network((number, prefix), strict=False)
    written = f"::ffff:{network.network_address}/{prefix + 96}"
    config = parse_config(f"[finger]\nallow_from = {written}\n", PATH)
    assert config.finger_allow_from == (network,)


def test_forward_allow_takes_every_host_a_query_may_name():
    """Names with a final dot and IP literals of either family, IPv4-mapped ones too:
    each is compared with the query's host as written, without regard to case."""
    config = parse_config("[finger]\nforward_allow = ::1, ::FFFF:127.0.0.1, Example.COM., "
                          "2001:DB8::7, 127.0.0.3\n", PATH)
    assert config.forward_allow == ("::1", "::ffff:127.0.0.1", "example.com.", "2001:db8::7",
                                    "127.0.0.3")
    assert parse_config(config_text(config), PATH) == config


@given(st.text(st.sampled_from("aZ09-.:_!%/"), min_size=1, max_size=70))
def test_forward_allow_takes_exactly_what_a_query_may_name(host):
    try:
        config = parse_config(f"[finger]\nforward_allow = {host}\n", PATH)
    except ConfigError as exc:
        assert not valid_host(host)
        assert exc.errors == [f"{PATH}:2: [finger] forward_allow: expected host names or "
                              f"addresses, got {host[:60]!r}"]
    else:
        assert valid_host(host) and config.forward_allow == (host.lower(),)


def effective(path):
    """The configuration at ``path`` as ``fingerd -T`` prints it, read back from elsewhere:
    its relative paths were resolved, so only ``path`` differs."""
    return dataclasses.replace(parse_config(config_text(load_config(path)), "/elsewhere/f.conf"),
                               path=path)


def test_the_effective_configuration_reads_back_to_the_same(tmp_path):
    bundled = os.path.join(ROOT, "init", "fingerd.conf")
    assert effective(bundled) == load_config(bundled)
    minimal = tmp_path / "fingerd.conf"
    minimal.write_text("[fingerd]\nusers_file = users\n")
    assert effective(str(minimal)) == load_config(str(minimal))
    assert f"\nusers_file = {tmp_path / 'users'}\n" in config_text(load_config(str(minimal)))


def test_the_effective_configuration_names_every_section_and_key():
    text = config_text(parse_config("", PATH))
    for section, key, *_ in SCHEMA:
        assert f"[{section}]" in text and f"\n{key} =" in text, (section, key)
    assert "\nproxy_from = 127.0.0.1, ::1\n" in text


@pytest.mark.parametrize("rules", [
    "replace =\n  a;b => c#d\n  [x] => y\n\n  e  =>  f g\n",
    "replace=#a => b\n  c => d;f\n",
    "replace = a =>\n  b  =>\n  c => d =>\n",
])
def test_replacement_rules_read_back_whatever_they_hold(rules):
    config = parse_config(f"[output]\n{rules}", PATH)
    assert config.replacements and parse_config(config_text(config), PATH) == config


def test_a_failed_start_finds_log_file_in_a_configuration_that_does_not_load(tmp_path):
    config = tmp_path / "fingerd.conf"
    assert configured_log_file(str(config)) == "", "no file: no log_file"
    config.write_text("[fingerd]\ntreads = 4\nlog_file = logs/fingerd.log ; relative\n")
    assert configured_log_file(str(config)) == str(tmp_path / "logs" / "fingerd.log")
