"""Request paths to workspace paths: accepted only if they name a place inside the root.

The rules are Azure Files' (the share behind ``/workspace`` in Azure), applied everywhere so
a workspace that works locally also works there: no absolute paths, no ``.``/``..`` or empty
segments, no control characters, no backslashes, none of ``" : | < > * ?``, no trailing dot or
space, no reserved device names, at most 255 characters a name and 2,048 a path.
"""

from __future__ import annotations

import re

from slipway.workspace.errors import PathRejected

MAX_NAME = 255
MAX_PATH = 2048
_FORBIDDEN = set('"\\:|<>*?')
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CLOCK$"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(10)}
# Names of Slipway's own in-flight temp files; never listed, never addressable.
TEMP_PREFIX = ".slipway-tmp-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_path(raw: str) -> tuple[str, ...]:
    """Split a ``/``-separated relative path into names, or raise ``PathRejected``."""
    if not raw:
        raise PathRejected("the path is empty")
    if _CONTROL.search(raw):
        raise PathRejected("the path contains a control character")
    if "\\" in raw:
        raise PathRejected("backslashes are not path separators; use /")
    if raw.startswith("/"):
        raise PathRejected("absolute paths are not allowed; give a path relative to the workspace")
    if len(raw) > MAX_PATH:
        raise PathRejected(f"the path is {len(raw)} characters long; Azure Files allows {MAX_PATH}")
    parts = tuple(raw.split("/"))
    for part in parts:
        check_name(part)
    return parts


def check_name(name: str) -> None:
    """Raise ``PathRejected`` unless ``name`` is a valid file or folder name."""
    if name == "":
        raise PathRejected("the path has an empty segment (// or a trailing /)")
    if name in (".", ".."):
        raise PathRejected(f"'{name}' segments are not allowed")
    if _CONTROL.search(name):
        raise PathRejected("the name contains a control character")
    bad = sorted(_FORBIDDEN.intersection(name))
    if bad:
        raise PathRejected(f"the name {name!r} contains {' '.join(bad)}, which Azure Files does not allow")
    if name.endswith((".", " ")):
        raise PathRejected(f"the name {name!r} ends with a dot or a space, which Azure Files does not allow")
    if len(name) > MAX_NAME:
        raise PathRejected(
            f"the name {name[:40]!r}... is {len(name)} characters long; the limit is {MAX_NAME}"
        )
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        raise PathRejected(f"{name!r} is a reserved device name")
    if name.startswith(TEMP_PREFIX):
        raise PathRejected(f"names starting with {TEMP_PREFIX} are reserved for Slipway's temporary files")


def join(parts: tuple[str, ...]) -> str:
    return "/".join(parts)
