"""Real Unix accounts for the tests of a room of learners: an instructor and learners, each with a home.

A hub gives each learner a Unix user (The Littlest JupyterHub makes ``jupyter-NAME``); file permissions
between them are what a shared cache and a class folder must get right, so the tests play them with
real accounts. Only root can make them: elsewhere the tests skip, or fail under
``SEGKIT_REQUIRE_TOOLS=1`` (``tests.conftest.skip_or_fail``). Every account is removed afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, skip_or_fail


@dataclass(frozen=True)
class Account:
    """A Unix user made for a test."""

    name: str  # the Unix user name
    uid: int
    gid: int  # its own primary group
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A login-like environment: this account's HOME and USER, PATH, and ``extra``."""
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": os.environ["PATH"],
                "PYTHONWARNINGS": "error", "OMP_NUM_THREADS": "1", **extra}

    def run(self, *command: str, cwd: Path | None = None, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess:
        """Run ``command`` as this account (its uid and all its groups, as at login), capturing text output."""
        return subprocess.run(list(command), user=self.uid, group=self.gid,
                              extra_groups=os.getgrouplist(self.name, self.gid),
                              cwd=cwd or self.home, env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess:
        """Run Python ``code`` as this account, with this checkout's segkit."""
        return self.run(sys.executable, "-c", code, PYTHONPATH=str(REPO), **env)


#: Where the tests that run at once share the count of those that need ``python_reachable``.
REACHABLE_STATE = Path(tempfile.gettempdir()) / "segkit-python-reachable.json"


@contextlib.contextmanager
def python_reachable() -> Iterator[None]:
    """Let other accounts run this Python: every folder above it gets the search bit for others (not the
    read bit; ``/root/.pyenv`` sits under ``/root``, mode 0700), as an admin opens a hub's Python to its
    users. The last test that needed it puts the modes back (tests run in parallel, hence the count)."""
    def update(change) -> None:
        with open(REACHABLE_STATE.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(REACHABLE_STATE.read_text()) if REACHABLE_STATE.exists() else {"users": 0, "modes": {}}
            change(state)
            REACHABLE_STATE.write_text(json.dumps(state))

    def enter(state) -> None:
        if state["users"] == 0:
            for folder in Path(os.path.realpath(sys.executable)).parents:
                mode = stat.S_IMODE(folder.stat().st_mode)
                if not mode & stat.S_IXOTH:
                    folder.chmod(mode | stat.S_IXOTH)
                    state["modes"][str(folder)] = mode
        state["users"] += 1

    def leave(state) -> None:
        state["users"] -= 1
        if state["users"] == 0:
            for folder, mode in state.pop("modes").items():
                Path(folder).chmod(mode)
            state["modes"] = {}

    update(enter)
    try:
        yield
    finally:
        update(leave)


@contextlib.contextmanager
def unix_accounts(roles: tuple[str, ...], group: str | None = "learners") -> Iterator[tuple[dict[str, Account], int]]:
    """Accounts named after ``roles`` (a short random prefix keeps parallel tests apart), homes (mode 0700)
    in a fresh folder that everyone can pass through, all members of one new group (the hub's learners
    group); yields them and the group's id."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        skip_or_fail("making Unix accounts needs root and useradd")
    prefix = f"sk{secrets.token_hex(2)}"
    base = Path(tempfile.mkdtemp(prefix="segkit-accounts-"))
    base.chmod(0o755)
    group_name = f"{prefix}{group}"[:32] if group else None
    made: list[str] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cleanup.callback(remove_accounts, made, group_name)
        cleanup.enter_context(python_reachable())
        if group_name:
            shadow_tool("groupadd", group_name)
        for role in roles:
            name = f"{prefix}{role}"[:32]
            # Homes 0700, as docs/workshop.md asks of a hub (Debian's useradd would make them 0755: readable by all).
            shadow_tool("useradd", "--create-home", "-K", "HOME_MODE=0700", "--home-dir", str(base / role),
                        "--user-group", *(["--groups", group_name] if group_name else []), "--shell", "/bin/sh", name)
            made.append(name)
        accounts = {}
        for role, name in zip(roles, made, strict=True):
            entry = pwd.getpwnam(name)
            accounts[role] = Account(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
        yield accounts, grp.getgrnam(group_name).gr_gid if group_name else -1


def shadow_tool(*command: str, check: bool = True) -> None:
    """Run useradd, userdel, groupadd or groupdel; tests on two workers may hold /etc/passwd's lock at the
    same moment, and the tools then fail at once ("cannot lock"): wait and try again."""
    for _ in range(40):
        done = subprocess.run(list(command), capture_output=True, text=True)
        if done.returncode == 0 or "lock" not in done.stderr:
            break
        time.sleep(0.25)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def remove_accounts(names: list[str], group_name: str | None) -> None:
    """Stop every process of the accounts, remove them with their homes, and their group."""
    for name in names:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    for name in names:
        shadow_tool("userdel", "--remove", name, check=False)
    if group_name:
        shadow_tool("groupdel", group_name, check=False)
