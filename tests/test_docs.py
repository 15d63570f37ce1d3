"""The operator's documentation is valid and in step with the code: README.md as the
front door, the pages under docs/ it links to, the man pages, and what the Debian
package ships of them."""

import glob
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from fingerd import limits, outcomes
from fingerd.config import SCHEMA, parse_config
from tests import test_query_path, test_set_path
from tests.support import ROOT
from tests.support.markers import needs_tool
from tests.support.net import exchange

DOCS = os.path.join(ROOT, "docs")
MAN_PAGES = ("fingerd.8", "fingerd-ctl.8", "fingerd.conf.5")
README = os.path.join(ROOT, "README.md")
#: The Markdown pages whose relative links must resolve.
MARKDOWN = [README] + sorted(glob.glob(os.path.join(DOCS, "*.md")))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@needs_tool("man", "man-db")
@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(page):
    result = subprocess.run(["man", "--warnings", "-l", os.path.join(DOCS, page)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"})
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) > 20


def documented_keys():
    """``(section, key)`` for every key described in fingerd.conf(5)."""
    keys = set()
    section = previous = None
    for line in read(os.path.join(DOCS, "fingerd.conf.5")).splitlines():
        heading = re.match(r'\.SH "SECTION \[(\w+)\]"', line)
        if heading:
            section = heading.group(1)
        elif previous == ".TP" and line.startswith(".B ") and section:
            keys.add((section, line[3:].strip()))
        previous = line
    return keys


def test_every_configuration_key_is_in_fingerd_conf_5_and_no_other():
    assert documented_keys() == {(section, key) for section, key, *_ in SCHEMA}


def test_every_configuration_key_is_in_the_example_configuration():
    example = read(os.path.join(ROOT, "init", "fingerd.conf"))
    for section, key, *_ in SCHEMA:
        assert re.search(rf"^{key} =", example, re.MULTILINE), (section, key)


@needs_tool("promtool", "prometheus")
def test_alert_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "rules", os.path.join(DOCS, "alerts.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def metric_names(text):
    return set(re.findall(r"\b((?:fingerd_|process_)[a-z_]+)\b", text))


def base_name(name):
    return re.sub(r"_(bucket|count|sum)$", "", name)


def exported_metrics(daemon):
    """The names of the series a running daemon's metrics endpoint exports, without the
    histogram's suffixes."""
    reply = exchange(daemon.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n").decode()
    body = reply.split("\r\n\r\n", 1)[1]
    return {base_name(re.split(r"[{ ]", line)[0])
            for line in body.splitlines() if line and not line.startswith("#")}


def test_dashboard_and_alerts_use_only_exported_metrics(daemon):
    exported = exported_metrics(daemon)
    dashboard = json.loads(read(os.path.join(DOCS, "grafana-dashboard.json")))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = read(os.path.join(DOCS, "alerts.yml"))
    used = {base_name(n) for n in metric_names(exprs) | metric_names(alerts)}
    assert used and used <= exported, used - exported


# README.md, the front door.

def readme_section(title):
    """The text of README's ``## title`` section, up to the next one."""
    text = read(README)
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def code_lines(text):
    """The lines of the indented code blocks in ``text``, without their indentation."""
    return [line[4:] for line in text.splitlines() if line.startswith("    ")]


def test_the_readme_is_a_front_door_of_at_most_300_lines():
    assert len(read(README).splitlines()) <= 300


def test_the_readme_opens_with_the_install_and_run_and_the_test_commands():
    before_first_section = read(README).split("\n## ", 1)[0]
    commands = code_lines(before_first_section)
    assert len(commands) == 2
    install, suite = commands
    assert install.startswith("apt-get install -y python3-pip && pip install")
    assert install.endswith("fingerd -n -c /etc/fingerd/fingerd.conf")
    assert suite.endswith("&& python3 -m pytest -q tests")


def test_ci_runs_exactly_the_test_command_the_readme_gives():
    suite = code_lines(read(README).split("\n## ", 1)[0])[1]
    apt, pip, pytest_command = suite.split(" && ")
    ci = read(os.path.join(ROOT, ".ci", "run"))
    assert pytest_command in ci.splitlines()
    assert shlex.split(pip)[-1] in ci
    installed = set(re.search(r"apt-get install -y -q --no-install-recommends(.*?)>",
                              ci, re.DOTALL).group(1).replace("\\", " ").split())
    # pip itself aside: .ci/run runs it as python3 -m pip.
    assert set(shlex.split(apt)[3:]) - {"python3-pip"} <= installed


def test_the_quick_try_out_serves_loopback_only(tmp_path):
    """The try-out's sed, run on the example configuration, leaves no service on an
    address another host could reach."""
    section = readme_section("A quick try-out, on loopback only")
    (edit,) = [line for line in code_lines(section) if line.startswith("sed -i ")]
    conf = tmp_path / "fingerd.conf"
    conf.write_text(read(os.path.join(ROOT, "init", "fingerd.conf")))
    subprocess.run(edit.replace("/etc/fingerd/fingerd.conf", shlex.quote(str(conf))),
                   shell=True, check=True, timeout=30)
    config = parse_config(conf.read_text(), str(conf))
    addresses = (config.finger_listen + config.setter_listen + config.metrics_listen
                 + config.web_listen)
    assert config.finger_listen
    assert all(ipaddress.ip_address(a.host).is_loopback for a in addresses), addresses


def test_the_quick_try_out_says_how_to_stop_and_undo_it():
    section = readme_section("A quick try-out, on loopback only")
    undo = code_lines(section)
    assert "Ctrl-C" in section and "fingerd-ctl stop" in section
    assert any(line.startswith("pip uninstall --break-system-packages -y fingerd")
               for line in undo)
    assert any(line.startswith("rm -rf /etc/fingerd") for line in undo)
    assert any(line.startswith("userdel fingerd") for line in undo)
    # The conffile prompt dpkg stops at when a hand install is left in place.
    assert "end of file\non stdin at conffile prompt" in section or \
        "end of file on stdin at conffile prompt" in section.replace("\n", " ")


# Links between the pages.

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = read(path)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
    """Every relative link names a file or directory of the tree, and every #anchor a
    heading of the page it points to."""
    broken = []
    for target in LINK.findall(read(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path \
            else page
        if not os.path.exists(resolved) or anchor and (
                not resolved.endswith(".md") or anchor not in anchors(resolved)):
            broken.append(target)
    assert not broken


def test_every_docs_page_is_reached_from_the_readme():
    linked = set()
    for target in LINK.findall(read(README)):
        linked.add(os.path.normpath(os.path.join(ROOT, target.partition("#")[0])))
    assert set(MARKDOWN[1:]) <= linked


# docs/design.md

def mapped_modules():
    """The modules docs/design.md's module map names, as paths under fingerd/: each
    folder's entries are indented two columns more than the folder."""
    text = read(os.path.join(DOCS, "design.md"))
    block = text[text.index("\n    fingerd/\n"):]
    modules, folders = set(), []
    for line in block.splitlines()[2:]:
        if not line.startswith("      "):
            break
        entry = re.match(r"((?:  )+)([a-z_]+/|[a-z_]+\.py(?: [a-z_]+\.py)*)\s", line)
        if not entry:
            continue
        depth = len(entry.group(1)) // 2 - 3
        del folders[depth:]
        if entry.group(2).endswith("/"):
            folders.append(entry.group(2))
        else:
            modules.update("".join(folders) + name for name in entry.group(2).split())
    return modules


def test_the_design_module_map_names_every_module_and_no_other():
    package = os.path.join(ROOT, "fingerd")
    on_disk = {os.path.relpath(path, package)
               for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True)
               if os.path.basename(path) != "__init__.py"}
    assert mapped_modules() == on_disk


def test_the_design_walks_name_only_modules_that_exist():
    text = read(os.path.join(DOCS, "design.md"))
    walks = text[text.index("## A finger query, module by module"):]
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", walks))
    assert named and named <= mapped_modules()


def walked_modules(heading):
    """The modules the numbered steps of one of docs/design.md's walks name, in order,
    as module names."""
    text = read(os.path.join(DOCS, "design.md"))
    walk = text[text.index(heading):].split("\n## ")[0]
    steps = re.findall(r"^ ?(\d+)\. `((?:[a-z_]+/)*[a-z_]+)\.py`", walk, re.MULTILINE)
    assert [int(n) for n, _path in steps] == list(range(1, len(steps) + 1))
    return ["fingerd." + path.replace("/", ".") for _n, path in steps]


@pytest.mark.parametrize("heading, traced", [
    ("## A finger query, module by module", test_query_path.PATH),
    ("## A status set, module by module", test_set_path.PATH)])
def test_each_walk_has_a_step_for_each_module_its_traced_path_crosses(heading, traced):
    walked = walked_modules(heading)
    assert len(walked) == len(set(walked)) and set(walked) == traced


# The man pages and the commands.

def help_of(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    return result.stdout


def man_options(page):
    """The option names in the OPTIONS section of a man page, unescaped."""
    text = read(os.path.join(DOCS, page))
    section = text[text.index(".SH OPTIONS"):].split("\n.SH ", 1)[0]
    section = re.sub(r"\\f[BIRP]", "", section).replace("\\-", "-")
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", section))


@pytest.mark.parametrize("module, page", [("fingerd", "fingerd.8"),
                                          ("fingerd.ctl", "fingerd-ctl.8")])
def test_every_option_of_a_command_is_in_its_man_page(module, page):
    # argparse heads the section "optional arguments:" before Python 3.10.
    listed = re.split(r"^(?:optional arguments|options):$", help_of(module), maxsplit=1,
                      flags=re.MULTILINE)[1]
    options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", listed)) - {"-h", "--help"}
    assert options and options <= man_options(page), options - man_options(page)


def test_every_fingerd_ctl_command_is_in_its_man_page():
    commands = re.findall(r"^    ([a-z]+)\s", help_of("fingerd.ctl"), re.MULTILINE)
    text = read(os.path.join(DOCS, "fingerd-ctl.8"))
    section = text[text.index(".SH COMMANDS"):].split("\n.SH ", 1)[0]
    documented = set(re.findall(r"^\.TP\n\.B[IR]? \"?([a-z]+)", section, re.MULTILINE))
    assert commands and set(commands) == documented


@pytest.mark.parametrize("page", ("fingerd.8", "fingerd-ctl.8"))
def test_the_command_man_pages_have_examples(page):
    text = read(os.path.join(DOCS, page))
    examples = text[text.index(".SH EXAMPLES"):].split("\n.SH ", 1)[0]
    assert examples.count(".EX\n") >= 3


def test_fingerd_8_files_names_what_the_package_installs():
    text = read(os.path.join(DOCS, "fingerd.8"))
    files = text[text.index(".SH FILES"):].split("\n.SH ", 1)[0]
    for path in ("/etc/fingerd/fingerd.conf", "/var/lib/fingerd/users", "/var/log/fingerd/",
                 "/etc/default/fingerd", "/etc/logrotate.d/fingerd", "/etc/init.d/fingerd",
                 "/run/fingerd.pid", "/lib/systemd/system/fingerd.service"):
        assert path.replace("-", "\\-") in files or path in files, path


# What the Debian package ships.

def test_the_package_ships_the_operators_pages_and_a_readme_debian():
    shipped = read(os.path.join(ROOT, "debian", "fingerd-py.docs")).split()
    for name in shipped:
        assert os.path.exists(os.path.join(ROOT, name)), name
    assert {"docs/guide.md", "docs/hosts.md"} <= set(shipped)
    readme = read(os.path.join(ROOT, "debian", "README.Debian"))
    for fact in ("/etc/fingerd/fingerd.conf", "/var/lib/fingerd/users",
                 "/var/log/fingerd/fingerd.log", "fingerd-ctl reload", "pip install"):
        assert fact in readme, fact


def test_the_guide_gives_the_log_bounds_limits_sets():
    """The bounds an operator reads of in the guide's logging sections are the daemon's."""
    guide = " ".join(read(os.path.join(DOCS, "guide.md")).split())
    assert (f"The parent reads at most {limits.WORKER_LOG_READ_BYTES // 1024} KiB of the "
            f"pipe a turn of its loop") in guide
    assert f"keeps up to {limits.STDERR_BACKLOG_BYTES // 1024 // 1024} MiB of lines" in guide


def test_the_guide_gives_the_users_file_bound_limits_sets():
    guide = " ".join(read(os.path.join(DOCS, "guide.md")).split())
    bound = limits.MAX_USERS_FILE_BYTES
    assert f"larger than fingerd reads ({bound // 1024 // 1024} MiB," in guide
    assert f"would grow past {bound} bytes" in guide


def test_the_guide_names_every_metric_the_daemon_exports(daemon):
    exported = exported_metrics(daemon)
    guide = read(os.path.join(DOCS, "guide.md"))
    table = guide[guide.index("| metric | type | labels |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`([a-z_]+)\*?`", table))
    prefixes = tuple(name for name in re.findall(r"`([a-z_]+)\*`", table))
    missing = {name for name in exported
               if name not in named and not name.startswith(prefixes)
               and re.sub(r"_(total|info|created)$", "", name) not in
               {re.sub(r"_(total|info)$", "", n) for n in named}}
    assert exported and not missing, missing


def guide_label_values(metric, label):
    """The values the guide's metrics table gives ``metric``'s ``label``: a list, or a
    dict of lists by service (``finger: found, ...; setter: ...``), parenthesised remarks
    on a value (``refused (the list, 403)``) taken out."""
    row = next(line for line in read(os.path.join(DOCS, "guide.md")).splitlines()
               if line.startswith(f"| `{metric}` |"))
    values = row[row.index(f"`{label}` (") + len(label) + 4:row.rindex(")")]
    while re.search(r" \([^()]*\)", values):
        values = re.sub(r" \([^()]*\)", "", values)
    if ": " not in values:
        return set(values.split(", "))
    return {service: set(value.split(", ")) for service, value in
            (part.split(": ", 1) for part in values.split("; "))}


def test_the_guide_names_every_outcome_and_reason_of_the_code_and_no_other():
    """The values an operator may see of ``outcome`` for each service, and of ``reason``,
    are the ones outcomes.py defines."""
    assert guide_label_values("fingerd_requests_total", "outcome") == {
        service: {*values, outcomes.ERROR} for service, values in outcomes.BY_SERVICE.items()}
    assert guide_label_values("fingerd_connections_rejected_total", "reason") == set(
        outcomes.REJECT_REASONS)
