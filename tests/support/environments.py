"""The daemon tests run again in other environments (Python 3.9, Debian 13, Debian's own
libraries), two runs at a time, each on a loopback of its own.

Such a run spends a minute or two mostly waiting on its daemons and clients, not on
the processors (Python 3.9's used 77 s of processor time in 105 s): one after another
the three took 215 s of the suite's 900. Started together (by tests/test_debian13.py's
first test, or else by the first test that asks for a run's result), two at a time in
the order their tests come, they overlap each other and the tests that come between
(the package built, checked and booted), and each test waits only for its own run.

Each run binds ports of its own choosing, and port 79, in a network namespace of its
own whose only interface is its loopback: none can take a port that another run or
the rest of the suite holds, nor be skipped because one does.
"""

import concurrent.futures
import inspect
import os
import sys

#: Runs going on at once: one for each of the machine's two processors.
AT_ONCE = 2
#: A command with these words before it runs in a new network namespace, its loopback up.
_OWN_LOOPBACK = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"')


def own_loopback(argv):
    """``argv`` run in a network namespace of its own, its loopback up, when run as root;
    as it is otherwise (only root may make one)."""
    return [*_OWN_LOOPBACK, *argv] if os.geteuid() == 0 else list(argv)


class EnvironmentRuns:
    """The runs of the test modules among ``items`` (a session's) whose tests ask for
    ``environment_runs``: each module's ``run_daemon_tests(tmp_path_factory)``, in the
    order their tests come, so that the first asked for are the first done."""

    def __init__(self, items, tmp_path_factory):
        self._modules = {}
        for item in items:
            function = getattr(item, "function", None)
            if (function is not None and _will_run(item)
                    and "environment_runs" in inspect.signature(function).parameters):
                self._modules.setdefault(item.module.__name__, item.module)
        self._tmp_path_factory = tmp_path_factory
        self._pool = None
        self._runs = {}

    def start(self):
        """Start every run, unless started already."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                AT_ONCE, thread_name_prefix="environment-run")
            for module in self._modules.values():
                self._start(module)

    def result(self, module_name):
        """What the run of the module ``module_name`` returned (or raised), once it has
        ended; the first call starts every run not started yet."""
        self.start()
        if module_name not in self._runs:
            self._start(sys.modules[module_name])
        return self._runs[module_name].result()

    def _start(self, module):
        self._runs[module.__name__] = self._pool.submit(module.run_daemon_tests,
                                                        self._tmp_path_factory)

    def close(self):
        """Wait for the runs under way, each bounded by its commands' timeouts; those not
        begun never begin."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _will_run(item):
    """Whether no skip marker of ``item`` skips it; one whose condition is a string is not
    evaluated here, and its module's run starts only when its test asks for it."""
    for mark in item.iter_markers():
        conditions = mark.args or (mark.kwargs.get("condition", True),)
        if mark.name == "skip" or (mark.name == "skipif" and any(
                isinstance(condition, str) or condition for condition in conditions)):
            return False
    return True
