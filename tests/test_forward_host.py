"""Which hosts a forwarded query may name and forward_allow may list (limits.py): pure
logic, checked against a reading of RFC 1123 written without regular expressions."""

import ipaddress
import string

from hypothesis import given
from hypothesis import strategies as st

from fingerd.config_keys import valid_host

LABEL_CHARACTERS = set(string.ascii_letters + string.digits + "-")


def by_hand(host):
    """RFC 1123 2.1 host names, one final dot allowed, and IP address literals."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253:
        return False
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    return all(0 < len(label) <= 63 and set(label) <= LABEL_CHARACTERS
               and label[0] != "-" and label[-1] != "-" for label in labels)


def test_names_and_addresses_are_hosts():
    for host in ("example.com", "example.com.", "a-b.c", "x", "a" * 63 + ".b",
                 "127.0.0.1", "::1", "2001:db8::7"):
        assert valid_host(host), host


def test_what_no_resolver_takes_is_no_host():
    for host in ("", ".", "..", "a..b", "-a", "a-", "a-.b", "a_b", "a" * 64, "a b",
                 "host:79", "[::1]", "a." * 127):
        assert not valid_host(host), host


def test_a_name_made_to_backtrack_is_refused_at_once():
    # A pattern with a repeat inside a repeat took 12 s for 28 letters and an
    # exclamation mark, and twice as long for each letter more, holding the GIL.
    for host in ("a" * 40 + "!", "a" * 252 + "!", "a-" * 100 + "!", "a." * 100 + "!"):
        assert not valid_host(host)


@given(st.text(st.sampled_from("ab09-.:!_"), max_size=80))
def test_valid_host_is_rfc_1123_read_by_hand(host):
    assert valid_host(host) == by_hand(host)
