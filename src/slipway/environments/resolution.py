"""Requirements to a :class:`Lock`: ``uv pip compile`` for the workflows' interpreter, exact
versions with their hashes, wheels only; cached by the hash of the inputs, in memory and in a
file, so the same inputs resolve once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from slipway.environments.requirements import Requirement
from slipway.environments.uvcli import UvRunner

__all__ = ["Lock", "ResolutionError", "Resolver"]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REQUIRED = re.compile(r"you require ([A-Za-z0-9][A-Za-z0-9._-]*)")


class ResolutionError(Exception):
    """The requirements have no solution (or uv could not reach the index in time): ``message``
    is uv's own explanation; ``file`` and ``line`` are those of the requirement it names
    (``None`` when it names none of them)."""

    def __init__(self, message: str, file: str | None, line: int | None) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file else ""
        super().__init__(f"{where}{message}")


@dataclass(frozen=True)
class Lock:
    """A resolved set of packages: ``text`` is a requirements file of exact versions and hashes
    (its first line names the interpreter), ``key`` the sha256 of ``text`` (the environment's
    folder name), ``packages`` the pins as ``name==version``."""

    key: str
    text: str
    packages: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Lock:
        packages = tuple(f"{m.group(1)}=={m.group(2)}" for m in map(_PIN.match, text.splitlines()) if m)
        return cls(hashlib.sha256(text.encode("utf-8")).hexdigest(), text, packages)


class Resolver:
    """Resolves for ``python`` (whose identity line heads every lock) with ``uv``; remembers
    each answer under ``cache_dir``."""

    def __init__(self, uv: UvRunner, python: str, identity: str, cache_dir: Path) -> None:
        self._uv = uv
        self._python = python
        self._header = f"# slipway environment for {identity}\n"
        self._cache_dir = cache_dir
        self._memory: dict[str, Lock] = {}
        self._guard = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}

    @property
    def empty(self) -> Lock:
        return Lock.of(self._header)

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        timeout: float,
        refresh: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> Lock:
        if not requirements:
            return self.empty
        texts = sorted({r.text for r in requirements})
        inputs = hashlib.sha256(
            json.dumps(
                {
                    "lock": self._header,
                    "index": self._uv.index_url,
                    "find_links": self._uv.find_links,
                    "requirements": texts,
                }
            ).encode()
        ).hexdigest()
        with self._guard:
            busy = self._busy.setdefault(inputs, threading.Lock())
        with busy:
            if not refresh:
                cached = self._memory.get(inputs) or self._read(inputs)
                if cached is not None:
                    self._memory[inputs] = cached
                    return cached
            lock = self._compile(texts, requirements, timeout=timeout, log=log)
            self._write(inputs, lock)
            self._memory[inputs] = lock
            return lock

    def _compile(
        self,
        texts: list[str],
        requirements: Sequence[Requirement],
        *,
        timeout: float,
        log: Callable[[str], None] | None,
    ) -> Lock:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        out: list[str] = []
        err: list[str] = []

        def collect(stream: str, line: str) -> None:
            (out if stream == "stdout" else err).append(line)
            if log is not None and stream != "stdout":
                log(line)

        with tempfile.TemporaryDirectory(dir=self._cache_dir, prefix=".compile-") as work:
            source = Path(work) / "requirements.in"
            source.write_text("\n".join(texts) + "\n", encoding="utf-8")
            result = self._uv.run(
                [
                    "pip",
                    "compile",
                    "--quiet",
                    "--no-header",
                    "--no-annotate",
                    "--generate-hashes",
                    "--no-build",
                    "--python",
                    self._python,
                    str(source),
                ],
                cwd=Path(work),
                log=collect,
                timeout=timeout,
            )
        if result.stopped is not None:
            raise ResolutionError(f"resolving the packages {result.stopped}", None, None)
        if result.exit_code != 0:
            message = "\n".join(err).strip() or result.tail.strip() or f"uv exited with {result.exit_code}"
            culprit = _culprit(message, requirements)
            raise ResolutionError(
                message, culprit.file if culprit else None, culprit.line if culprit else None
            )
        return Lock.of(self._header + "\n".join(out).strip() + "\n")

    def _read(self, inputs: str) -> Lock | None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = (self._cache_dir / f"{inputs}.txt").read_text(encoding="utf-8")
            if text.startswith(self._header):
                return Lock.of(text)
        return None

    def _write(self, inputs: str, lock: Lock) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._cache_dir, prefix=".lock-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(lock.text)
        os.replace(temporary, self._cache_dir / f"{inputs}.txt")


def _culprit(message: str, requirements: Sequence[Requirement]) -> Requirement | None:
    """The requirement uv's message is about: the one after "you require", else the first of
    them the message names."""
    by_name: dict[str, Requirement] = {}
    for requirement in requirements:
        by_name.setdefault(requirement.name, requirement)
    for match in _REQUIRED.finditer(message):
        found = by_name.get(canonicalize_name(match.group(1).rstrip(".,")))
        if found is not None:
            return found
    for word in _WORD.findall(message):
        found = by_name.get(canonicalize_name(word.rstrip(".,")))
        if found is not None:
            return found
    return None
