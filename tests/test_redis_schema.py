"""What fingerd keeps in Redis and which entries it serves: pure, no Redis needed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.config import ConfigError, parse_config
from fingerd.users.redis_schema import (
    entry_problem,
    hinted_name,
    redacted,
    shown_field,
    unread_problem,
)
from fingerd.users.usersfile import parse_users


@given(st.binary(max_size=40), st.binary(max_size=300))
def test_an_entry_is_served_only_if_it_reads_back_as_the_same_users_file_line(field, value):
    name, status, problem = entry_problem(field, value)
    if problem is None:
        assert dict(parse_users(f"{name}:{status}\n".encode()).items()) == {name: status}
    else:
        assert name is None and status is None


@pytest.mark.parametrize("field, value, problem", [
    (b"-alice", b"x", "invalid user name"),
    (b"a" * 33, b"x", "invalid user name"),
    (b"alice", b"two\nlines", "status contains a control character"),
    (b"alice", b"x" * 257, "status longer than 256 bytes"),
    (b"al\xffice", b"x", "not valid UTF-8"),
])
def test_entries_the_users_file_would_refuse_are_not_served(field, value, problem):
    assert entry_problem(field, value) == (None, None, problem)


@pytest.mark.parametrize("data, name", [
    (b"alice", "alice"), (b"*", None), (b"-alice", None), (b"a" * 33, None),
    (b"x" * 10_000, None), (b"al\xffice", None),
])
def test_a_hint_is_read_only_for_a_name_a_user_may_have(data, name):
    assert hinted_name(data) == name


def test_an_entry_skipped_unread_says_which_part_is_too_long():
    assert unread_problem(33, 5) == "invalid user name (a field of 33 bytes, not read)"
    assert unread_problem(5, 257) == "status longer than 256 bytes (257 bytes, not read)"


def test_a_url_shows_no_password():
    assert redacted("redis://:secret@10.0.0.1:6380/2") == "redis://:***@10.0.0.1:6380/2"
    assert redacted("redis://u:secret@[::1]/0") == "redis://u:***@[::1]/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("redis://h/0?db=1&password=secret") == "redis://h/0?db=1&password=***"
    assert redacted("redis://u:a@h/0?pass%77ord=b&username=u#x") == \
        "redis://u:***@h/0?pass%77ord=***&username=u#x"
    assert redacted("unix:///run/redis.sock?password=secret") == \
        "unix:///run/redis.sock?password=***"


def test_a_field_is_shown_escaped_and_short():
    assert shown_field(b"x\n\xff" + b"y" * 100) == repr("x\n\\xff" + "y" * 37)


def store_config(**keys):
    return parse_config("[store]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()), "f")


def test_the_store_defaults_to_the_users_file():
    config = parse_config("", "f")
    assert (config.store_backend, config.redis_url, config.redis_prefix) == (
        "file", "redis://127.0.0.1:6379/0", "fingerd")


@pytest.mark.parametrize("url", ["redis://h", "redis://:pw@10.0.0.1:6380/3",
                                 "rediss://h:6379/0", "unix:///run/redis/redis.sock",
                                 "redis://h/0?db=2&username=fd&password=pw",
                                 "unix:///run/redis/redis.sock?db=1",
                                 "rediss://h/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_cert_reqs=required"
                                 "&ssl_check_hostname=yes"])
def test_redis_urls_the_client_library_reads_are_accepted(url):
    assert store_config(backend="redis", redis_url=url).redis_url == url


@pytest.mark.parametrize("key, value, message", [
    ("backend", "mysql", "expected one of file, redis"),
    ("redis_url", "http://h/", "expected redis://HOST"),
    ("redis_url", "redis://h/users", "expected a database number"),
    ("redis_url", "unix://relative", "expected unix:///PATH"),
    ("redis_url", "redis://h/0?db=x", "query option db: expected a database number, got 'x'"),
    ("redis_url", "redis://h/0?d%62=x", "query option db: expected a database number, got"),
    ("redis_url", "redis://h/0?socket_timeout=abc",
     "query option 'socket_timeout' not accepted; expected db, username, password"),
    ("redis_url", "redis://h/0?socket_timeout=60", "query option 'socket_timeout' not accepted"),
    ("redis_url", "unix:///r.sock?ssl_ca_certs=/ca.pem", "query option 'ssl_ca_certs' not"),
    ("redis_url", "rediss://h/0?ssl_cert_reqs=some",
     "query option ssl_cert_reqs: expected none, optional or required, got 'some'"),
    ("redis_url", "redis://h/0?password=", "query option password: expected a password"),
    ("redis_url", "redis://h/0?secret", "expected query options as ?NAME=VALUE"),
    ("redis_prefix", "has space", "expected 1 to 64 characters"),
])
def test_invalid_store_settings_name_the_line_and_key(key, value, message):
    with pytest.raises(ConfigError) as caught:
        store_config(**{key: value})
    assert f"f:2: [store] {key}: {message}" in str(caught.value)
