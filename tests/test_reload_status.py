"""The outcome file of a reload as ``fingerd-ctl reload`` trusts and shows it, from a real
daemon: another account's file is not its word, and what it says cannot drive the
terminal."""

import json
import os
import subprocess
import sys

from fingerd.process import reload_status
from tests.support import ROOT
from tests.support.children import as_nobody
from tests.support.daemon import held_until
from tests.support.markers import needs_root
from tests.support.polling import wait_until


@needs_root
def test_an_outcome_another_account_forged_beside_the_pidfile_is_not_believed(
        make_daemon, public_dir, tmp_path):
    """The pidfile in a directory every account may write (as /tmp): nobody's file
    claiming the reload applied does not hide the daemon's refusal. The daemon reads
    its configuration again only once told, so its own outcome comes after fingerd-ctl
    has seen the forged one."""
    shared = os.path.join(public_dir, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    d = make_daemon(fingerd__pidfile=os.path.join(shared, "fingerd.pid"))
    told = os.path.join(d.dir, "reload")
    d.start(env=held_until(str(tmp_path / "site"), "fingerd.process.parent.reloading.prepare",
                           told))
    forged = json.dumps({"pid": d.proc.pid, "reload": 1, "asked": 1e300, "applied": True,
                         "message": "configuration applied (forged)"})

    def forge():
        with open(d.pidfile + ".reload", "w") as f:
            f.write(forged)

    assert as_nobody(forge).error is None
    d.reconfigure(finger__list_users="maybe")
    ctl = subprocess.Popen([sys.executable, "-m", "fingerd.ctl", "-c", d.config_file, "reload"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "SIGHUP: reading the configuration" in d.log(), what="the HUP")
        open(told, "w").close()
        out, err = ctl.communicate(timeout=60)
    finally:
        ctl.kill()
        ctl.wait()
    assert ctl.returncode == 1 and "forged" not in out + err, (out, err)
    assert err.splitlines()[-1].startswith(f"fingerd-ctl: reload refused: {d.config_file}:")
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"


@needs_root
def test_an_outcome_is_printed_with_its_control_characters_escaped(make_daemon):
    """A configuration whose path holds a terminal's escape: the message names it, and
    fingerd-ctl prints it as ``\\x1b``, never the byte itself."""
    d = make_daemon()
    odd = os.path.join(d.dir, "\x1b[2Jconf")
    os.mkdir(odd, 0o755)
    d.config_file = os.path.join(odd, "fingerd.conf")
    d.reconfigure().start()
    result = d.ctl("reload")
    assert (result.returncode, result.stderr) == (0, "")
    assert "\x1b" not in result.stdout
    assert f"configuration {d.dir}/\\x1b[2Jconf/fingerd.conf applied: worker " in result.stdout


def test_a_message_is_shown_a_line_an_error_each_line_escaped():
    assert reload_status.shown("a.conf:3: bad\nb.conf:1: \x1b[2J\u202e\tx") == (
        "a.conf:3: bad\nb.conf:1: \\x1b[2J\\u202e\\tx")


def test_an_outcome_missing_a_field_is_none(tmp_path):
    """An outcome file of the right owner without ``applied`` (or with it not a boolean) is
    no outcome: fingerd-ctl reads none rather than fail on it."""
    pidfile = str(tmp_path / "fingerd.pid")
    whole = {"pid": 1, "reload": 1, "asked": 1.0, "applied": True, "message": "applied"}
    for outcome in (whole, {**whole, "applied": "yes"},
                    {key: value for key, value in whole.items() if key != "applied"}):
        with open(reload_status.path_for(pidfile), "w") as f:
            json.dump(outcome, f)
        assert reload_status.read(pidfile) == (outcome if outcome is whole else None)


def test_an_outcome_nested_deeper_than_json_reads_is_none(tmp_path):
    """Brackets nested past the interpreter's recursion limit, within the bytes read,
    are no outcome rather than a traceback from fingerd-ctl."""
    pidfile = str(tmp_path / "fingerd.pid")
    with open(reload_status.path_for(pidfile), "w") as f:
        f.write("[" * (reload_status.MAX_BYTES - 1))
    assert reload_status.read(pidfile) is None


def test_a_directory_in_the_way_of_the_outcome_keeps_nothing_of_the_stop(make_daemon):
    """A directory at PIDFILE.reload (made where another account may write beside the
    pidfile): the stop ended in a traceback before it removed the pidfile and its lock,
    and never logged that it stopped."""
    d = make_daemon()
    os.mkdir(reload_status.path_for(d.pidfile))
    d.start()
    assert d.stop() == 0, d.log()
    assert not os.path.exists(d.pidfile) and not os.path.exists(d.pidfile + ".lock")
    assert "cannot remove the reload's outcome: Is a directory" in d.log()
    assert "Traceback" not in d.log() and " stopped" in d.log(), d.log()
