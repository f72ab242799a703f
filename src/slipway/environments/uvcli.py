"""How Slipway runs uv: the binary of the pinned ``uv`` package, an environment built from the
child allow-list (:mod:`slipway.childenv`) plus the platform's index settings, a cache of its
own, no configuration file of the user or of any project, no Python downloads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slipway.childenv import child_environment
from slipway.processes import CommandResult, run_command

__all__ = ["UvRunner", "find_uv"]


def find_uv() -> Path:
    """The uv binary shipped by the ``uv`` wheel Slipway depends on."""
    import uv

    return Path(uv.find_uv_bin())


@dataclass(frozen=True)
class UvRunner:
    """uv with its cache in ``cache_dir``; ``index_url`` (empty: PyPI) and ``find_links`` (a
    folder or page of wheels; empty: none) are passed through its environment, never on its
    command line, where ``ps`` would show an index token."""

    executable: Path
    cache_dir: Path
    index_url: str = field(default="", repr=False)
    find_links: str = ""

    def environment(self) -> dict[str, str]:
        explicit = {
            "UV_CACHE_DIR": str(self.cache_dir),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
            "NO_COLOR": "1",
        }
        if self.index_url:
            explicit["UV_DEFAULT_INDEX"] = self.index_url
        if self.find_links:
            explicit["UV_FIND_LINKS"] = self.find_links
        return child_environment(explicit)

    def run(
        self, args: Sequence[str], *, cwd: Path, log: Callable[[str, str], None], timeout: float
    ) -> CommandResult:
        return run_command(
            [str(self.executable), *args, "--color", "never"],
            cwd=cwd,
            env=self.environment(),
            log=log,
            timeout=max(timeout, 0.001),
            kill_grace=1.0,
        )
