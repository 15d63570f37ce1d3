"""The process model's shape, kept as issue 22 left it: light imports, constants low,
classes and modules a reader can hold.

Import counts are taken in a fresh interpreter each, so that nothing a test
imported before changes them.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

PACKAGE = os.path.join(ROOT, "fingerd")

#: Most fingerd modules ``import fingerd.ctl`` may load: it reads one timeout and the
#: pidfile, and must not load the worker (its seccomp filter, its services).
MAX_CTL_MODULES = 15
#: Most fingerd modules the supervisor's import closure may hold.
MAX_SUPERVISOR_MODULES = 25
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250
#: The worker's package: neither fingerd-ctl nor the supervisor may load any of it.
WORKER = "fingerd.process.worker"


def modules_loaded_by(module):
    """The fingerd modules ``import module`` loads, in a fresh interpreter."""
    code = (f"import json, sys, {module}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith('fingerd'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def is_the_workers(module):
    """Whether ``module`` is the worker's package (its seccomp filter, its life) or in it."""
    return module == WORKER or module.startswith(WORKER + ".")


def sources(folder):
    for where, _, names in os.walk(folder):
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(where, name)


def runtime_imports(path):
    """``(module imported, names)`` of each import in ``path`` that runs, those under
    ``if TYPE_CHECKING:`` aside."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                 for statement in block.body for node in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_fingerd_ctl_loads_few_modules():
    loaded = modules_loaded_by("fingerd.ctl")
    assert len(loaded) <= MAX_CTL_MODULES, loaded
    assert not [m for m in loaded if is_the_workers(m)], loaded


def test_the_supervisors_import_closure_is_small():
    loaded = modules_loaded_by("fingerd.process.parent.supervisor")
    assert len(loaded) <= MAX_SUPERVISOR_MODULES, loaded
    assert not any(m.startswith(("fingerd.serving", "fingerd.finger")) for m in loaded), loaded
    assert not [m for m in loaded if is_the_workers(m)], loaded


def test_nothing_but_the_command_imports_the_supervisor():
    """The supervisor sits above its collaborators: none imports it (for a constant or
    anything else); only ``fingerd`` itself builds one."""
    importers = {os.path.relpath(path, ROOT): names for path in sources(PACKAGE)
                 for module, names in runtime_imports(path)
                 if module == "fingerd.process.parent.supervisor"
                 or (module == "fingerd.process.parent" and "supervisor" in names)}
    assert importers == {"fingerd/cli.py": ["Supervisor"]}


@pytest.mark.parametrize("package", ["worker", "writer"])
def test_no_child_process_imports_the_parents_code(package):
    """What the worker and the writer child run shares with the parent only through
    ``fingerd.process`` itself (channel, logformat, ...), never the parent's package."""
    importers = {os.path.relpath(path, ROOT): module
                 for path in sources(os.path.join(PACKAGE, "process", package))
                 for module, names in runtime_imports(path)
                 if module == "fingerd.process.parent"
                 or module.startswith("fingerd.process.parent.")
                 or (module == "fingerd.process" and "parent" in names)}
    assert importers == {}


@pytest.mark.parametrize("leaf", ["fingerd/limits.py", "fingerd/process/exits_and_signals.py"])
def test_what_processes_share_imports_nothing_of_the_project(leaf):
    imported = [module for module, _ in runtime_imports(os.path.join(ROOT, leaf))]
    assert not [module for module in imported if module.startswith("fingerd")], imported


def test_no_module_or_class_is_too_long():
    too_long = []
    for path in sources(PACKAGE):
        text = open(path, encoding="utf-8").read()
        name = os.path.relpath(path, ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append(f"{name}: class {node.name}, {lines} lines")
    assert too_long == []
