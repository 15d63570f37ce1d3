"""``[store] redis_password_file``: the Redis password read from a file only root reads,
not from the configuration file every account reads. Checked against the redis client
library's own reading of the URL the worker is given."""

import os

import pytest

from fingerd.config import ConfigError, parse_config
from fingerd.users.redis_password import (
    MAX_PASSWORD_BYTES,
    exposed,
    gives_password,
    read_password,
    with_password,
)

redis_connection = pytest.importorskip("redis.connection")

#: Passwords with every character a URL gives a meaning to, and some it cannot hold.
PASSWORDS = ["s3cret", "a:b@c/d?e#f%41 g+h", "pässwörd", "&password=x", "[::1]"]
URLS = [
    ("redis://127.0.0.1:6380/2", {"host": "127.0.0.1", "port": 6380, "db": 2}),
    ("redis://fingerd@redis.example:6379/0", {"username": "fingerd", "host": "redis.example"}),
    ("redis://[::1]:6379/0", {"host": "::1", "port": 6379}),
    ("rediss://redis.example/0?ssl_cert_reqs=none", {"host": "redis.example",
                                                    "ssl_cert_reqs": "none"}),
    ("unix:///run/redis/redis.sock?db=1", {"path": "/run/redis/redis.sock", "db": 1}),
]


def config(tmp_path, url="redis://127.0.0.1/0", password_file="password", backend="redis"):
    path = tmp_path / "fingerd.conf"
    path.write_text(f"[store]\nbackend = {backend}\nredis_url = {url}\n"
                    f"redis_password_file = {password_file}\n")
    return parse_config(path.read_text(), str(path))


def password_file(tmp_path, data):
    path = tmp_path / "password"
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("url, parts", URLS)
@pytest.mark.parametrize("password", PASSWORDS)
def test_the_client_library_reads_the_password_and_the_rest_of_the_url(tmp_path, url, parts,
                                                                       password):
    password_file(tmp_path, password.encode() + b"\n")
    given = with_password(config(tmp_path, url))
    read = redis_connection.parse_url(given.redis_url)
    assert read["password"] == password
    assert {key: read[key] for key in parts} == parts
    assert "username" in parts or "username" not in read


@pytest.mark.parametrize("data, password", [
    (b"s3cret", "s3cret"), (b"s3cret\n", "s3cret"), (b"s3cret\r\n", "s3cret"),
    (b" spaced out \n", " spaced out "), (b"x" * MAX_PASSWORD_BYTES, "x" * MAX_PASSWORD_BYTES),
])
def test_the_password_is_the_files_one_line(tmp_path, data, password):
    assert read_password(password_file(tmp_path, data)) == password


@pytest.mark.parametrize("data, problem", [
    (b"", "empty"), (b"\n", "empty"), (b"one\ntwo\n", "more than one line"),
    (b"one\rtwo", "more than one line"), (b"\xff\xfe", "not valid UTF-8"),
    (b"x" * (MAX_PASSWORD_BYTES + 1), f"larger than {MAX_PASSWORD_BYTES} bytes"),
])
def test_a_file_that_holds_no_password_is_an_error_naming_the_key_and_the_file(tmp_path, data,
                                                                               problem):
    path = password_file(tmp_path, data)
    with pytest.raises(ConfigError) as raised:
        with_password(config(tmp_path))
    assert str(raised.value).startswith(
        f"{tmp_path}/fingerd.conf:4: [store] redis_password_file: {path}: {problem}")


def test_a_missing_file_or_a_fifo_is_an_error_and_never_waited_on(tmp_path):
    with pytest.raises(ConfigError, match=r"fingerd.conf:4: .*/password: No such file"):
        with_password(config(tmp_path))
    os.mkfifo(tmp_path / "password")
    with pytest.raises(ConfigError, match="password: not a regular file"):
        with_password(config(tmp_path))


def test_a_directory_is_an_error_and_leaves_no_descriptor_open(tmp_path):
    """The root parent reads it at each reload: it keeps no descriptor for a refused one."""
    (tmp_path / "password").mkdir()
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(ConfigError) as raised:
            with_password(config(tmp_path))
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert str(raised.value).endswith("/password: Is a directory")


@pytest.mark.parametrize("url", ["redis://:other@127.0.0.1/0", "redis://u:other@127.0.0.1/0",
                                 "redis://127.0.0.1/0?password=other"])
def test_a_password_given_twice_is_an_error(tmp_path, url):
    password_file(tmp_path, b"s3cret\n")
    with pytest.raises(ConfigError) as raised:
        with_password(config(tmp_path, url))
    assert str(raised.value) == (f"{tmp_path}/fingerd.conf:4: [store] redis_password_file: "
                                 "redis_url gives a password too; give it in one place")
    assert gives_password(url)


def test_the_path_is_taken_from_the_configurations_directory_and_unused_without_redis(
        tmp_path):
    password_file(tmp_path, b"s3cret\n")
    given = config(tmp_path, password_file="password")
    assert given.redis_password_file == str(tmp_path / "password")
    assert redis_connection.parse_url(with_password(given).redis_url)["password"] == "s3cret"
    os.unlink(tmp_path / "password")
    file_backend = config(tmp_path, backend="file")
    assert with_password(file_backend) is file_backend
    no_file = config(tmp_path, password_file="")
    assert with_password(no_file) is no_file


def test_a_password_in_a_configuration_every_account_reads_is_warned_of(tmp_path):
    given = config(tmp_path, "redis://:s3cret@127.0.0.1/0", password_file="")
    os.chmod(given.path, 0o644)
    warning = exposed(given)
    assert warning == (f"{given.path}:3: [store] redis_url holds the Redis password, and every "
                       f"account may read {given.path}; put the password in a file only root "
                       "reads, named by redis_password_file")
    assert "s3cret" not in warning
    os.chmod(given.path, 0o640)
    assert exposed(given) is None
    os.chmod(given.path, 0o644)
    assert exposed(config(tmp_path, "redis://127.0.0.1/0", password_file="")) is None
