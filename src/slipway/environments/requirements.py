"""What a workflow asks to have installed: its PEP 723 ``# /// script`` block and the workspace's
shared ``workflows/requirements.txt``, each requirement with the file and line it came from.

Only what can be installed without running anyone's code on the platform's side is accepted:
PEP 508 requirements by name (``requests>=2.31``, ``rich[jupyter]; python_version < "3.12"``)
or by an ``https://`` URL. Environments install wheels only (``--no-build``), so neither a
source distribution's ``setup.py`` nor a ``git+`` URL ever runs as the user that builds them.
Option lines of ``requirements.txt`` (``-r``, ``-e``, ``--index-url``) are refused: the package
index is the platform's setting, not the workspace's.
"""

from __future__ import annotations

import platform
import re
import tomllib
from dataclasses import dataclass
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as Pep508
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

__all__ = ["SHARED_REQUIREMENTS_FILE", "Requirement", "RequirementsError", "requirements_of"]

SHARED_REQUIREMENTS_FILE = "workflows/requirements.txt"

# The reference regular expression of PEP 723 (Inline script metadata).
_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_TOML_LINE = re.compile(r"at line (\d+)")
_SCRIPT_KEYS = frozenset({"dependencies", "requires-python", "tool"})


class RequirementsError(ValueError):
    """A workflow's packages cannot be read: ``file`` (workspace-relative) and 1-based ``line``
    say where; ``message`` says what is wrong."""

    def __init__(self, message: str, file: str, line: int) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line}: {message}")


@dataclass(frozen=True)
class Requirement:
    """One PEP 508 requirement and where it was written."""

    text: str  # normalised by packaging: ``requests>=2.31``, ``rich[jupyter]; python_version < "3.12"``
    name: str  # canonical: ``typing-extensions`` for ``Typing_Extensions``
    file: str
    line: int


def requirements_of(
    source: bytes,
    file: str,
    shared: bytes | None,
    shared_file: str = SHARED_REQUIREMENTS_FILE,
    *,
    python_version: str | None = None,
) -> list[Requirement]:
    """The requirements of the workflow ``file`` whose text is ``source``: those of the shared
    ``requirements.txt`` (``shared``, ``None`` when there is none) then those of its own
    ``# /// script`` block. ``requires-python`` is checked against ``python_version`` (the
    running interpreter's by default). Raises :class:`RequirementsError`."""
    found = _parse_requirements_txt(shared, shared_file) if shared is not None else []
    found += _parse_script_block(source, file, python_version or platform.python_version())
    return found


def _parse_script_block(source: bytes, file: str, python_version: str) -> list[Requirement]:
    text = source.decode("utf-8", "replace")
    blocks = [m for m in _BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return []
    block = blocks[0]
    # The line of "# /// script"; the block's first TOML line is the next one.
    opening = text.count("\n", 0, block.start()) + 1
    if len(blocks) > 1:
        second = text.count("\n", 0, blocks[1].start()) + 1
        raise RequirementsError(
            f"a second `# /// script` block (the first is at line {opening}); keep one", file, second
        )
    lines = [line[2:] if line.startswith("# ") else line[1:] for line in block.group("content").splitlines()]
    content = "\n".join(lines)
    try:
        metadata = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_LINE.search(str(exc))
        line = opening + int(at.group(1)) if at else opening
        raise RequirementsError(f"the `# /// script` block is not valid TOML: {exc}", file, line) from None

    def line_of(needle: str, start: int = 0) -> int:
        for index in range(start, len(lines)):
            if needle in lines[index]:
                return opening + 1 + index
        return opening

    unknown = sorted(set(metadata) - _SCRIPT_KEYS)
    if unknown:
        raise RequirementsError(
            f"unknown key {unknown[0]!r} in the `# /// script` block (expected dependencies, "
            "requires-python or [tool])",
            file,
            line_of(unknown[0]),
        )
    if "requires-python" in metadata:
        _check_requires_python(metadata["requires-python"], python_version, file, line_of("requires-python"))
    dependencies = metadata.get("dependencies", [])
    key_line = line_of("dependencies")
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise RequirementsError("`dependencies` must be a list of strings", file, key_line)
    found: list[Requirement] = []
    cursor = max(key_line - opening - 1, 0)
    for dependency in dependencies:
        line = line_of(dependency, cursor)
        if line != opening:
            cursor = line - opening - 1
        found.append(_requirement(dependency, file, line))
    return found


def _check_requires_python(value: object, python_version: str, file: str, line: int) -> None:
    if not isinstance(value, str):
        raise RequirementsError("`requires-python` must be a string such as '>=3.11'", file, line)
    try:
        specifier = SpecifierSet(value)
    except InvalidSpecifier:
        raise RequirementsError(
            f"`requires-python = {value!r}` is not a version specifier", file, line
        ) from None
    if not specifier.contains(python_version, prereleases=True):
        raise RequirementsError(
            f"this workflow requires Python {value}, and Slipway runs Python {python_version}", file, line
        )


def _parse_requirements_txt(content: bytes, file: str) -> list[Requirement]:
    found: list[Requirement] = []
    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        # As pip reads it: a comment starts at a "#" at the start of a line or after a blank.
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            option = line.split()[0].split("=")[0]
            raise RequirementsError(
                f"option lines are not supported ({option}): list one requirement per line; the "
                "package index is set by the platform (SLIPWAY_PACKAGE_INDEX_URL)",
                file,
                number,
            )
        if line.endswith("\\"):
            raise RequirementsError(
                "line continuations are not supported: one requirement per line", file, number
            )
        found.append(_requirement(line, file, number))
    return found


def _requirement(text: str, file: str, line: int) -> Requirement:
    try:
        parsed = Pep508(text)
    except InvalidRequirement as exc:
        raise RequirementsError(f"{text!r} is not a valid requirement: {exc}", file, line) from None
    if parsed.url is not None:
        url = urlparse(parsed.url)
        if url.scheme != "https" or not url.netloc:
            raise RequirementsError(
                f"{text!r}: only https:// URLs of wheels may be named (no files, git or http)", file, line
            )
    return Requirement(str(parsed), canonicalize_name(parsed.name), file, line)
