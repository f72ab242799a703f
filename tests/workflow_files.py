"""Workflow files for tests, written into a workspace the way a user saves them."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_workflow(workspace: Path, name: str, source: str) -> Path:
    folder = workspace / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    """1-based line number of the first line containing ``marker``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in {path}")
