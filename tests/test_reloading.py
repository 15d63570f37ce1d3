"""Reading the configuration again for a reload, the counts the parent shares with the
worker, and the outcome file ``fingerd-ctl reload`` reads: in process, on real files and
sockets."""

import json
import logging
import os
import socket
from types import MappingProxyType

import pytest

from fingerd.config import load_config
from fingerd.process import reload_status
from fingerd.process.parent.activation import Handover
from fingerd.process.parent.listeners import bind_all, close_all
from fingerd.process.parent.reloading import prepare
from fingerd.process.parent.reloads import ReloadRefused
from fingerd.process.parent_counts import ConfigReloads
from tests.support.children import in_child


def write_config(path, finger, setter, extra=""):
    path.write_text(f"[fingerd]\nuser = nobody\npidfile = {path.parent}/fingerd.pid\n"
                    f"users_file = {path.parent}/users\n{extra}"
                    f"[finger]\nlisten = {finger}\n[setter]\nlisten = {setter}\n"
                    f"[metrics]\nlisten =\n")
    return str(path)


@pytest.fixture
def serving(tmp_path, ports):
    """A configuration, loaded and bound, as the running daemon holds it."""
    finger, setter = ports.take(), ports.take()
    path = tmp_path / "fingerd.conf"
    config = load_config(write_config(path, f"127.0.0.1:{finger}", f"127.0.0.1:{setter}"))
    sockets = bind_all(config)
    yield path, config, sockets, finger, setter
    close_all(sockets)


def test_a_valid_file_keeps_the_sockets_that_stay_and_binds_the_new(serving, ports):
    path, config, sockets, finger, setter = serving
    added = ports.take()
    write_config(path, f"127.0.0.1:{finger}, 127.0.0.1:{added}", f"127.0.0.1:{setter}",
                 "threads = 3\n")
    plan = prepare(config, sockets, privileged=False)
    try:
        assert plan.config.threads == 3 and plan.account is None
        assert plan.sockets["finger"][0] is sockets["finger"][0]
        assert plan.sockets["finger"][1].getsockname() == ("127.0.0.1", added)
        assert plan.fresh == (plan.sockets["finger"][1],) and plan.unused == ()
    finally:
        plan.close_fresh()
    assert plan.sockets["finger"][1].fileno() == -1


def test_an_invalid_file_is_refused_with_file_and_line_and_nothing_is_bound(serving, ports):
    path, config, sockets, finger, setter = serving
    added = ports.take()
    write_config(path, f"127.0.0.1:{finger}, 127.0.0.1:{added}", f"127.0.0.1:{setter}",
                 "threads = lots\n")
    with pytest.raises(ReloadRefused) as refused:
        prepare(config, sockets, privileged=False)
    assert str(refused.value).startswith(f"{path}:5: [fingerd] threads: ")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", added))  # nothing was left bound there


def test_an_address_in_use_is_refused_and_the_sockets_are_untouched(serving, ports):
    path, config, sockets, finger, setter = serving
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        write_config(path, f"127.0.0.1:{finger}", f"127.0.0.1:{taken}")
        with pytest.raises(ReloadRefused, match=f"127.0.0.1:{taken} .*address already in use"):
            prepare(config, sockets, privileged=False)
    assert sockets["setter"][0].fileno() != -1


@pytest.mark.parametrize("held, wanted", [("127.0.0.1", "0.0.0.0"), ("0.0.0.0", "127.0.0.1")])
def test_an_address_this_daemon_holds_on_the_port_is_named_with_restart(tmp_path, ports, held,
                                                                        wanted):
    """From a host to the wildcard on the same port, or back: the socket the change drops
    holds the port until the reload is over, so the refusal says whose it is and that a
    restart makes the change."""
    finger, setter = ports.take(), ports.take()
    path = tmp_path / "fingerd.conf"
    config = load_config(write_config(path, f"{held}:{finger}", f"127.0.0.1:{setter}"))
    sockets = bind_all(config)
    try:
        write_config(path, f"{wanted}:{finger}", f"127.0.0.1:{setter}")
        with pytest.raises(ReloadRefused) as refused:
            prepare(config, sockets, privileged=False)
        assert str(refused.value) == (
            f"cannot listen on {wanted}:{finger} ([finger] listen): address already in use; "
            f"this daemon's own {held}:{finger} holds that port until the reload is over (new "
            f"addresses are bound before old ones are closed): restart fingerd to make this "
            f"change")
        assert sockets["finger"][0].fileno() != -1
    finally:
        close_all(sockets)


def test_a_port_a_socket_from_systemd_holds_is_not_blamed_on_the_reload(tmp_path, ports):
    """systemd's socket stays through a reload and a restart alike: the refusal is the
    address in use alone, without telling the operator to restart."""
    finger, setter, web = ports.take(), ports.take(), ports.take()
    path = tmp_path / "fingerd.conf"
    config = load_config(write_config(path, f"127.0.0.1:{finger}", f"127.0.0.1:{setter}"))
    from_systemd = socket.create_server(("127.0.0.1", web))
    handover = Handover(MappingProxyType({"web": (from_systemd,)}))
    sockets = handover.merged(bind_all(handover.to_bind(config)))
    try:
        write_config(path, f"0.0.0.0:{web}", f"127.0.0.1:{setter}")
        with pytest.raises(ReloadRefused) as refused:
            prepare(config, sockets, privileged=False, handover=handover)
        assert str(refused.value) == (
            f"cannot listen on 0.0.0.0:{web} ([finger] listen): address already in use")
    finally:
        close_all(sockets)


def test_an_unknown_account_is_refused(serving):
    path, config, sockets, finger, setter = serving
    path.write_text(path.read_text().replace("user = nobody", "user = no-such-account"))
    with pytest.raises(ReloadRefused, match="no such account 'no-such-account'"):
        prepare(config, sockets, privileged=False)


def test_pidfile_and_log_file_are_kept_and_named_once_each(serving, caplog):
    path, config, sockets, finger, setter = serving
    write_config(path, f"127.0.0.1:{finger}", f"127.0.0.1:{setter}",
                 "log_file = /var/log/elsewhere.log\nthreads = 2\n")
    path.write_text(path.read_text().replace("fingerd.pid", "other.pid"))
    with caplog.at_level(logging.WARNING, logger="fingerd"):
        plan = prepare(config, sockets, privileged=False)
    assert plan.config.pidfile == config.pidfile and plan.config.log_file == config.log_file
    assert plan.config.threads == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:3: [fingerd] pidfile = {path.parent}/other.pid takes effect at the next "
        f"restart; {config.pidfile} stays in use until then",
        f"{path}:5: [fingerd] log_file = /var/log/elsewhere.log takes effect at the next "
        f"restart; (empty) stays in use until then"]


def test_counts_written_by_the_parent_are_read_by_a_child_that_inherited_them():
    counts = ConfigReloads()
    assert counts.read() == {"success": 0, "failure": 0}
    counts.record("failure")

    def child_view():
        return ConfigReloads(counts.fd).read()

    assert in_child(child_view).value == {"success": 0, "failure": 1}
    counts.record("success")
    counts.record("success")
    assert ConfigReloads(counts.fd).read() == {"success": 2, "failure": 1}


def test_the_parent_counts_on_whatever_a_worker_wrote_in_the_counts_file():
    """The worker inherits the file writable: what it writes there is never read back
    by the parent, which would have failed its next reload on a count it cannot add
    to (2**64 - 1)."""
    counts = ConfigReloads()
    counts.record("success")

    def hostile_worker():
        os.pwrite(counts.fd, b"\xff" * 16, 0)

    in_child(hostile_worker)
    counts.record("failure")
    assert ConfigReloads(counts.fd).read() == {"success": 1, "failure": 1}


def test_the_outcome_file_is_replaced_whole_and_read_back(tmp_path):
    pidfile = str(tmp_path / "fingerd.pid")
    status = reload_status.ReloadStatus(pidfile)
    assert reload_status.read(pidfile) is None
    status.record(False, "fingerd.conf:3: bad", 10.5)
    status.record(True, "applied", 12.25)
    assert reload_status.read(pidfile) == {"pid": os.getpid(), "reload": 2, "asked": 12.25,
                                           "applied": True, "message": "applied"}
    assert os.stat(pidfile + ".reload").st_mode & 0o777 == 0o644
    status.remove()
    assert reload_status.read(pidfile) is None


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", json.dumps(
    {"pid": "1", "reload": 1, "asked": 1.0, "applied": True, "message": ""}).encode(),
    json.dumps({"pid": 1, "reload": 1, "applied": True, "message": ""}).encode()])
def test_an_outcome_file_that_is_not_one_reads_as_none(tmp_path, content):
    pidfile = str(tmp_path / "fingerd.pid")
    with open(pidfile + ".reload", "wb") as f:
        f.write(content)
    assert reload_status.read(pidfile) is None


def test_a_message_too_long_is_cut_and_the_outcome_stays_whole(tmp_path):
    """A configuration with hundreds of unknown keys refuses with a message of as many
    lines: the file was cut at 16 KiB, its JSON with it, and fingerd-ctl reload waited
    40 s for an outcome it could not read."""
    pidfile = str(tmp_path / "fingerd.pid")
    message = "\n".join(f"fingerd.conf:{n}: unknown key \u00e9\x01" for n in range(2000))
    reload_status.ReloadStatus(pidfile).record(False, message, 3.0)
    status = reload_status.read(pidfile)
    assert status is not None and status["applied"] is False
    assert status["message"].startswith(message[:1000]) and status["message"].endswith("...")


def test_a_symbolic_link_at_the_outcome_path_is_neither_followed_nor_written_through(
        tmp_path):
    pidfile = str(tmp_path / "fingerd.pid")
    target = tmp_path / "target"
    target.write_text(json.dumps({"pid": 1, "reload": 9, "applied": True, "message": "x"}))
    os.symlink(target, pidfile + ".reload")
    assert reload_status.read(pidfile) is None
    reload_status.ReloadStatus(pidfile).record(True, "applied", 1.0)
    assert not os.path.islink(pidfile + ".reload")
    assert json.loads(target.read_text())["reload"] == 9
