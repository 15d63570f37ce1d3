"""scripts/fuzz_live.py, run small: it starts a daemon, fuzzes every port and checks it."""

import json
import os
import subprocess
import sys

from tests.support import ROOT
from tests.support.markers import needs_root


@needs_root
def test_a_short_run_fuzzes_every_port_and_finds_the_daemon_well(tmp_path):
    summary_file = tmp_path / "summary.json"
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "fuzz_live.py"), "--inputs", "400",
         "--batch", "200", "--seconds", "60", "--seed", "12", "--json", str(summary_file)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["ok"] and summary["inputs"] == 400 and summary["batches"] == 2
    assert all(summary["inputs_by_port"].values()), summary["inputs_by_port"]
    assert summary["checks"]["passed"] == 10 and summary["checks"]["failed"] == 0
    assert summary["worker"]["pid_unchanged"] and summary["worker"]["restarts"] == 0
    assert "result: OK" in run.stdout
