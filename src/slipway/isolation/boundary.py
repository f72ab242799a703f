"""What a workflow's process can reach: the one place to audit the line between user code and
the platform.

**Who it runs as.** When the platform runs as root (it does in the Functions image), every load
and step runs as an unprivileged user, ``slipway-step`` (the image creates it) or else
``nobody``: not the platform's user. So it cannot read the platform's files (the secrets file,
``local.settings.json``, the Key Vault and storage credentials the host keeps), its environment
(``/proc/<pid>/environ``) or its memory, and cannot write the workspace, whose files the platform
owns (in GitHub mode the workspace is read-only to workflow code; in editor mode too: a run's
files belong in ``ctx.workdir``). When the platform is not root (``slipway dev`` as a developer),
steps run as that developer, as any script they run would; the platform then marks itself
non-dumpable so that a step cannot read its environment or memory through ``/proc``.

**Its environment** is :func:`step_environment`: the allow-listed basics of
:mod:`slipway.childenv` (search path, locale, temp folder, proxy and certificate settings),
``HOME`` in the run's own folder, the SDK's folder on ``PYTHONPATH``; nothing of the worker's
settings, whatever their name.

**What it sees of Slipway** is :data:`SDK_MODULES`, copied into a folder of its own: the SDK,
the child's runner and what they import. Not the platform's modules or its installed packages.

**What it holds**: the request on stdin (params, outputs of earlier steps, the values of the
secrets the workflow declares) and nothing that lets it call the API or storage as the
platform. It can reach the network like any program on the machine (Azurite in development
answers anyone with its well-known key; in Azure, storage needs the account key or the
platform's managed identity, whose endpoint secret is not passed).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pwd
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from slipway.childenv import child_environment

# The modules a workflow's process imports from Slipway: nothing else of the platform is there.
SDK_MODULES = (
    "__init__.py",
    "sdk.py",
    "childenv.py",
    "processes.py",
    "isolation/__init__.py",
    "isolation/protocol.py",
    "isolation/supervisor.py",
    "isolation/child.py",
)
DEFAULT_STEP_USERS = ("slipway-step", "nobody")
_PR_SET_DUMPABLE = 4


class IsolationUnavailable(RuntimeError):
    """Steps cannot run as configured (say how to fix it)."""


@dataclass(frozen=True)
class StepIdentity:
    """The user a workflow's processes run as; ``uid`` None: the platform's own user."""

    name: str
    uid: int | None = None
    gid: int | None = None

    @property
    def separate(self) -> bool:
        return self.uid is not None


def resolve_identity(setting: str) -> StepIdentity:
    """``setting`` is SLIPWAY_STEP_USER: empty for the default, a user name, or ``self``."""
    me = pwd.getpwuid(os.getuid()).pw_name if _has_user(os.getuid()) else str(os.getuid())
    if setting == "self":
        return StepIdentity(me)
    if os.getuid() != 0:
        if setting and setting != me:
            raise IsolationUnavailable(
                f"SLIPWAY_STEP_USER={setting}: only a platform running as root can run steps as "
                "another user; leave it empty to run them as yourself"
            )
        return StepIdentity(me)
    names = (setting,) if setting else DEFAULT_STEP_USERS
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise IsolationUnavailable(f"SLIPWAY_STEP_USER={name} is root; name an unprivileged user")
        return StepIdentity(name, entry.pw_uid, entry.pw_gid)
    raise IsolationUnavailable(
        f"no user {' or '.join(names)} to run workflow steps as: create it "
        "(useradd --system slipway-step) or set SLIPWAY_STEP_USER"
    )


def _has_user(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def protect_platform(identity: StepIdentity) -> None:
    """Steps run as the platform's user: make this process's /proc entries (environment,
    memory, file descriptors) unreadable to them."""
    if identity.separate:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def install_sdk(root: Path) -> Path:
    """Copy :data:`SDK_MODULES` into ``root/sdk-<hash>/slipway/``; the folder for PYTHONPATH."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for module in SDK_MODULES:
        digest.update(module.encode() + b"\0" + (package / module).read_bytes())
    target = root / f"sdk-{digest.hexdigest()[:16]}"
    if (target / ".complete").exists():
        return target
    building = root / f".sdk-{os.getpid()}-{digest.hexdigest()[:8]}"
    shutil.rmtree(building, ignore_errors=True)
    for module in SDK_MODULES:
        destination = building / "slipway" / module
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / module, destination)
        destination.chmod(0o644)
    for folder in [building, *building.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    (building / ".complete").write_text("")
    root.mkdir(parents=True, exist_ok=True)
    try:
        building.rename(target)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return target


def step_environment(
    sdk_dir: Path, home: Path, identity: StepIdentity, *, debugging: bool = False
) -> dict[str, str]:
    """The whole environment of a workflow's process (see the module's docstring)."""
    env = child_environment(
        {
            "HOME": str(home),
            "PYTHONPATH": str(sdk_dir),
            "PYTHONSAFEPATH": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
        }
    )
    if identity.separate:
        env["USER"] = env["LOGNAME"] = identity.name
    if debugging:
        # ENABLE_DEBUGGING only. debugpy follows this process by rewriting its argv (no setting
        # needs to pass for that); without this it would print, into every step's log, that
        # frozen standard-library modules may miss breakpoints (workflow files never are).
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def prepare_folder(path: Path, identity: StepIdentity) -> None:
    """A folder the step's user owns and only it may enter (a run's workdir, its home)."""
    path.mkdir(parents=True, exist_ok=True)
    if identity.separate:
        # On a share mounted with fixed owners (Azure Files) the mount options decide instead.
        with contextlib.suppress(OSError):
            os.chown(path, identity.uid, identity.gid)  # type: ignore[arg-type]
    with contextlib.suppress(OSError):
        path.chmod(0o700)


def check_reachable(identity: StepIdentity, paths: list[Path]) -> None:
    """The step's user must be able to enter every folder on the way to ``paths`` (the
    interpreter, the SDK copy, the snapshots), or its process cannot even start."""
    if not identity.separate:
        return
    for target in paths:
        for folder in [*reversed(target.resolve().parents)]:
            try:
                info = folder.stat()
            except FileNotFoundError:
                break  # made later, by the platform, with modes the step user can enter
            mode = info.st_mode
            owner_ok = info.st_uid == identity.uid and mode & stat.S_IXUSR
            group_ok = info.st_gid == identity.gid and mode & stat.S_IXGRP
            if not (mode & stat.S_IXOTH or owner_ok or group_ok):
                raise IsolationUnavailable(
                    f"workflow steps run as {identity.name}, who cannot enter {folder} (on the way to "
                    f"{target}): make it traversable (chmod o+x {folder}), move the folder, or set "
                    "SLIPWAY_STEP_USER=self to run workflow code as the platform's own user"
                )


def interpreter() -> Path:
    """The interpreter of the platform, which every workflow environment is built on."""
    return Path(sys.executable)
