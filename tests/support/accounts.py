"""Real accounts for tests, made with useradd and always removed with userdel."""

import contextlib
import os
import shutil
import subprocess

USERADD = shutil.which("useradd") or "/usr/sbin/useradd"
USERDEL = shutil.which("userdel") or "/usr/sbin/userdel"

#: The group the test accounts' files belong to (Debian's "users").
GROUP = 100


def useradd(name, uid, home, gecos):
    """Account ``name`` with its own new home; a leftover of the same name is removed
    first."""
    userdel(name)
    subprocess.run([USERADD, "--uid", str(uid), "--home-dir", home, "--no-create-home",
                    "--comment", gecos, "--shell", "/bin/sh", "--no-user-group", name],
                   check=True, capture_output=True)
    os.mkdir(home, 0o755)
    os.chown(home, uid, GROUP)


def userdel(name):
    subprocess.run([USERDEL, name], capture_output=True)


def write_as(path, data, uid):
    """A file of ``uid``'s, readable by all, as a user's own ~/.plan is."""
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, GROUP)
    os.chmod(path, 0o644)


@contextlib.contextmanager
def made_accounts(homes, gecos_by_name, first_uid):
    """``{name: (uid, home)}`` for an account a name of ``gecos_by_name``, with uids from
    ``first_uid`` in order and homes in the new directory ``homes``; always removed."""
    os.mkdir(homes, 0o755)
    made = {}
    try:
        for uid, (name, gecos) in enumerate(gecos_by_name.items(), first_uid):
            made[name] = (uid, os.path.join(homes, name))
            useradd(name, uid, made[name][1], gecos)
        yield made
    finally:
        for name in made:
            userdel(name)


#: nobody's uid and gid on Debian: the worker's default account.
NOBODY = 65534


def become_nobody():
    """In a forked child: drop every id to nobody's, as another process of the worker's
    default account would run."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
