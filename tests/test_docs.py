"""The operator's documentation is valid and in step with the code."""

import json
import os
import re
import subprocess

import pytest

from fingerd.config import SCHEMA
from tests.support import ROOT
from tests.support.markers import needs_tool
from tests.support.net import exchange

DOCS = os.path.join(ROOT, "docs")
MAN_PAGES = ("fingerd.8", "fingerd-ctl.8", "fingerd.conf.5")


@needs_tool("man", "man-db")
@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(page):
    result = subprocess.run(["man", "--warnings", "-l", os.path.join(DOCS, page)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"})
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) > 20


def documented_keys():
    """``(section, key)`` for every key described in fingerd.conf(5)."""
    keys = set()
    section = None
    lines = open(os.path.join(DOCS, "fingerd.conf.5")).read().splitlines()
    for previous, line in zip(lines, lines[1:]):
        heading = re.match(r'\.SH "SECTION \[(\w+)\]"', line)
        if heading:
            section = heading.group(1)
        elif previous == ".TP" and line.startswith(".B ") and section:
            keys.add((section, line[3:].strip()))
    return keys


def test_every_configuration_key_is_in_fingerd_conf_5_and_no_other():
    assert documented_keys() == {(section, key) for section, key, *_ in SCHEMA}


def test_every_configuration_key_is_in_the_readme_or_example():
    example = open(os.path.join(ROOT, "init", "fingerd.conf")).read()
    for section, key, *_ in SCHEMA:
        assert re.search(rf"^{key} =", example, re.M), (section, key)


@needs_tool("promtool", "prometheus")
def test_alert_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "rules", os.path.join(DOCS, "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def metric_names(text):
    return set(re.findall(r"\b((?:fingerd_|process_)[a-z_]+)\b", text))


def base_name(name):
    return re.sub(r"_(bucket|count|sum)$", "", name)


def test_dashboard_and_alerts_use_only_exported_metrics(daemon):
    body = exchange(daemon.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n").decode()
    exported = {base_name(re.split(r"[{ ]", line)[0])
                for line in body.splitlines() if line and not line.startswith("#")}
    dashboard = json.load(open(os.path.join(DOCS, "grafana-dashboard.json")))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = open(os.path.join(DOCS, "alerts.yml")).read()
    used = {base_name(n) for n in metric_names(exprs) | metric_names(alerts)}
    assert used and used <= exported, used - exported
