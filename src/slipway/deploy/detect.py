"""What a checked-out project is and how to build it: a :class:`BuildPlan`.

Rules (overrides given by the site's configuration win over each of them):

* **Plain static site**: no ``package.json`` at the project's root. The site is the project
  folder itself when it has an ``index.html``; otherwise the first of ``public/`` and ``dist/``
  that has one (a repository of committed, already built files). Nothing is installed or built.
* **Node project**: a ``package.json`` (a JSON object, at most 1 MiB). The package manager comes
  from the lockfile: ``package-lock.json``/``npm-shrinkwrap.json`` → npm, ``yarn.lock`` → yarn,
  ``pnpm-lock.yaml`` → pnpm, ``bun.lockb``/``bun.lock`` → bun; no lockfile → npm. Lockfiles of
  more than one manager are an error unless the manager is configured, or ``package.json``
  names it in its ``packageManager`` field (corepack's convention).
* Install: with a lockfile, the manager's frozen install (``npm ci``, ``yarn install
  --frozen-lockfile``, ``pnpm install --frozen-lockfile``, ``bun install --frozen-lockfile``);
  without one, a plain install. Test: ``<pm> run test`` when a ``test`` script exists and is not
  npm's ``no test specified`` placeholder. Build: ``<pm> run build`` when a ``build`` script
  exists; a configured build command runs through ``/bin/sh -c``.
* Output folder: the configured one, or, after the build, the first of :data:`OUTPUT_CANDIDATES`
  holding an ``index.html``, a folder the build created or changed before one it did not touch
  (``public/`` is the *source* of static assets in Vite, Create React App, Next and Nuxt, so it
  also comes last). A configured folder must stay inside the project.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "INSTALL_COMMANDS",
    "LOCKFILES",
    "OUTPUT_CANDIDATES",
    "BuildPlan",
    "DetectError",
    "detect_build",
    "find_output_dir",
    "snapshot_output_candidates",
]

PackageManager = Literal["npm", "yarn", "pnpm", "bun"]
PACKAGE_MANAGERS: tuple[PackageManager, ...] = ("npm", "yarn", "pnpm", "bun")

# Lockfile name → package manager, in the order they are reported.
LOCKFILES: dict[str, PackageManager] = {
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
    "bun.lockb": "bun",
    "bun.lock": "bun",
}
# (with a lockfile, without one)
INSTALL_COMMANDS: dict[PackageManager, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "npm": (("npm", "ci"), ("npm", "install")),
    "yarn": (("yarn", "install", "--frozen-lockfile"), ("yarn", "install")),
    "pnpm": (("pnpm", "install", "--frozen-lockfile"), ("pnpm", "install")),
    "bun": (("bun", "install", "--frozen-lockfile"), ("bun", "install")),
}
# Installing over a node_modules restored from the cache: must not reach the registry; a
# missing package fails the command (and the build falls back to a clean install).
OFFLINE_INSTALL_COMMANDS: dict[PackageManager, tuple[str, ...]] = {
    "npm": ("npm", "install", "--offline", "--no-save"),
    "yarn": ("yarn", "install", "--frozen-lockfile", "--offline"),
    "pnpm": ("pnpm", "install", "--frozen-lockfile", "--offline"),
    "bun": ("bun", "install", "--frozen-lockfile"),
}
OUTPUT_CANDIDATES: tuple[str, ...] = ("dist", "build", "out", ".output/public", "_site", "public")
STATIC_CANDIDATES: tuple[str, ...] = ("public", "dist")
NPM_TEST_PLACEHOLDER = "no test specified"
MAX_PACKAGE_JSON_BYTES = 1024 * 1024


class DetectError(Exception):
    """The project cannot be built as it is; the message says what to change."""


@dataclass(frozen=True)
class BuildPlan:
    """How to build one project. Commands are argument lists run in ``project_dir``.

    ``output_dir`` is known before the build for a static site or a configured folder; otherwise
    it is ``None`` and :func:`find_output_dir` picks it after the build.
    """

    kind: Literal["static", "node"]
    project_dir: Path
    package_manager: PackageManager | None = None
    lockfile: str | None = None
    install_command: tuple[str, ...] | None = None
    offline_install_command: tuple[str, ...] | None = None
    test_command: tuple[str, ...] | None = None
    build_command: tuple[str, ...] | None = None
    output_dir: Path | None = None


def detect_build(
    project_dir: str | os.PathLike[str],
    *,
    package_manager: str | None = None,
    build_command: str | None = None,
    output_dir: str | None = None,
) -> BuildPlan:
    """Decide how to build the project in ``project_dir`` (see the module's rules)."""
    root = Path(project_dir).resolve()
    if not root.is_dir():
        raise DetectError(f"the project folder {project_dir} does not exist")
    configured_output = _inside(root, output_dir) if output_dir else None
    if configured_output is not None and configured_output.exists() and not configured_output.is_dir():
        raise DetectError(f"the output folder {output_dir!r} is a file, not a folder")
    manifest = root / "package.json"
    if not manifest.exists():
        if package_manager or build_command:
            raise DetectError(
                "a package manager or build command is configured but the project has no package.json at its root"
            )
        if configured_output is not None and not configured_output.is_dir():
            # Nothing builds it: a static site's output folder must be there already.
            raise DetectError(f"the output folder {output_dir!r} does not exist in the project")
        return BuildPlan(kind="static", project_dir=root, output_dir=configured_output or _static_site(root))
    package = _read_package_json(manifest)
    manager, lockfile = _package_manager(root, package, package_manager)
    scripts = package.get("scripts") or {}
    test_script = scripts.get("test")
    has_test = bool(test_script) and NPM_TEST_PLACEHOLDER not in test_script
    if build_command is not None and not build_command.strip():
        raise DetectError("the configured build command is empty")
    if build_command:
        build: tuple[str, ...] | None = ("/bin/sh", "-c", build_command)
    elif scripts.get("build"):
        build = (manager, "run", "build")
    else:
        build = None
    return BuildPlan(
        kind="node",
        project_dir=root,
        package_manager=manager,
        lockfile=lockfile,
        install_command=INSTALL_COMMANDS[manager][0 if lockfile else 1],
        offline_install_command=OFFLINE_INSTALL_COMMANDS[manager] if lockfile else None,
        test_command=(manager, "run", "test") if has_test else None,
        build_command=build,
        output_dir=configured_output,
    )


def snapshot_output_candidates(project_dir: Path) -> dict[str, int]:
    """Which output candidates exist before the build, with their modification time (ns)."""
    found = {}
    for name in OUTPUT_CANDIDATES:
        path = project_dir / name
        if path.is_dir():
            found[name] = path.stat().st_mtime_ns
    return found


def find_output_dir(plan: BuildPlan, *, before: Mapping[str, int] | None = None) -> Path:
    """The folder to publish once the build ran (``before``: :func:`snapshot_output_candidates`
    taken before it)."""
    if plan.output_dir is not None:
        # Resolved again: the build may have replaced the folder by a link leading elsewhere.
        output = plan.output_dir.resolve()
        if not output.is_relative_to(plan.project_dir):
            raise DetectError(
                f"the output folder {_shown(plan, plan.output_dir)!r} points outside the project folder"
            )
        if not output.is_dir():
            raise DetectError(
                f"the configured output folder {_shown(plan, output)!r} does not exist after the build"
            )
        return output
    before = before or {}
    with_index = [name for name in OUTPUT_CANDIDATES if (plan.project_dir / name / "index.html").is_file()]
    touched = [
        name
        for name in with_index
        if name not in before or (plan.project_dir / name).stat().st_mtime_ns != before[name]
    ]
    chosen = (touched or with_index or [None])[0]
    if chosen is None:
        if (plan.project_dir / "index.html").is_file() and plan.build_command is None:
            return plan.project_dir
        raise DetectError(
            "no output folder with an index.html after the build (looked for "
            + ", ".join(OUTPUT_CANDIDATES)
            + "); configure the output folder"
        )
    return plan.project_dir / chosen


def _shown(plan: BuildPlan, path: Path) -> str:
    return (
        path.relative_to(plan.project_dir).as_posix() if path.is_relative_to(plan.project_dir) else str(path)
    )


def _inside(root: Path, relative: str) -> Path:
    """``relative`` resolved against ``root`` (symbolic links followed); refused if it leaves it."""
    if Path(relative).is_absolute():
        raise DetectError(
            f"the output folder {relative!r} must be a path relative to the project, not absolute"
        )
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise DetectError(f"the output folder {relative!r} points outside the project folder")
    return resolved


def _static_site(root: Path) -> Path:
    if (root / "index.html").is_file():
        return root
    for name in STATIC_CANDIDATES:
        if (root / name / "index.html").is_file():
            return root / name
    raise DetectError(
        "no package.json and no index.html at the project's root or in public/ or dist/: "
        "add an index.html, a package.json with a build script, or configure the output folder"
    )


def _read_package_json(path: Path) -> dict[str, object]:
    size = path.stat().st_size
    if size > MAX_PACKAGE_JSON_BYTES:
        raise DetectError(f"package.json is too big ({size} bytes; at most {MAX_PACKAGE_JSON_BYTES})")
    try:
        package = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectError(f"package.json is not valid JSON: {exc}") from exc
    if not isinstance(package, dict):
        raise DetectError("package.json must hold a JSON object")
    scripts = package.get("scripts")
    if scripts is not None and not (
        isinstance(scripts, dict) and all(isinstance(value, str) for value in scripts.values())
    ):
        raise DetectError('package.json: "scripts" must be an object of command strings')
    return package


def _package_manager(
    root: Path, package: Mapping[str, object], configured: str | None
) -> tuple[PackageManager, str | None]:
    lockfiles = [name for name in LOCKFILES if (root / name).is_file()]
    managers = sorted({LOCKFILES[name] for name in lockfiles}, key=PACKAGE_MANAGERS.index)
    declared = package.get("packageManager")
    if configured is None and isinstance(declared, str) and len(managers) > 1:
        configured = declared.split("@", 1)[0] or None
        source = 'package.json\'s "packageManager"'
    else:
        source = "the configured package manager"
    if configured is not None:
        if configured not in PACKAGE_MANAGERS:
            raise DetectError(f"{source} {configured!r} is not one of {', '.join(PACKAGE_MANAGERS)}")
        manager: PackageManager = configured  # type: ignore[assignment]
    elif len(managers) > 1:
        raise DetectError(
            "lockfiles of more than one package manager: "
            + ", ".join(lockfiles)
            + "; delete the ones you do not use or configure the package manager"
        )
    else:
        manager = managers[0] if managers else "npm"
    own = [name for name in lockfiles if LOCKFILES[name] == manager]
    return manager, (own[0] if own else None)
