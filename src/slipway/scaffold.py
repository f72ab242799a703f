"""`slipway init`: turn a folder into a workflow repository that runs Slipway with Docker.

The files come from ``templates/workflow-repo`` and the engine's example workflow. Nothing
that exists is overwritten unless asked, so running it on a repository a user already has
adds only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slipway.engine.service import EXAMPLE_SOURCE

_TEMPLATES = Path(__file__).with_name("templates") / "workflow-repo"

# Where each file goes in the repository, and where it comes from.
FILES: dict[str, Path] = {
    "docker-compose.yml": _TEMPLATES / "docker-compose.yml",
    ".vscode/launch.json": _TEMPLATES / "launch.json",
    "workflows/hello.py": EXAMPLE_SOURCE,
    "README.md": _TEMPLATES / "README.md",
}


class InitRefused(Exception):
    """Files exist and ``force`` was not given; the message names them."""


@dataclass(frozen=True)
class InitResult:
    written: list[str]
    kept: list[str]


def init_repository(folder: Path, *, force: bool = False, keep_existing: bool = False) -> InitResult:
    """Write the files into ``folder`` (created if missing).

    Existing files are refused (``InitRefused``) unless ``force`` (overwrite them) or
    ``keep_existing`` (leave them and write the rest).
    """
    existing = [name for name in FILES if (folder / name).exists()]
    if existing and not (force or keep_existing):
        raise InitRefused(
            f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''} in {folder}: "
            "--force overwrites, --keep-existing writes only what is missing"
        )
    written, kept = [], []
    for name, source in FILES.items():
        target = folder / name
        if target.exists() and not force:
            kept.append(name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        written.append(name)
    return InitResult(written, kept)
