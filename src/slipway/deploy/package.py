"""The deployable artifact: the output folder as a deterministic zip.

Entries are the output folder's files (folders are implied by their paths), in sorted order,
with a fixed timestamp (1980-01-01, the earliest a zip can hold), mode 0644 and the same
compression, so the same files give the same bytes. The zip also holds
``.well-known/slipway-deploy.json`` (deployment id, site, commit, build time): a published site
tells which deployment it is, which the verify step reads back over HTTP. A file of that name
in the output itself is replaced.

Two addresses come back: ``sha256`` of the zip's bytes (what is stored and uploaded; unique
per deployment because of the deploy file) and ``content_sha256``, the SHA-256 of the sorted
``<path> NUL <file sha256> LF`` lines of every file *except* the deploy file: two builds with
the same output have the same content address whatever their deployment, so a rebuild of an
unchanged commit can be recognised (and its publish skipped) by the caller.

Links: a link to a file or folder inside the output folder is followed (its content is stored
under the link's name; a folder link to one of its own ancestors is refused as a loop); a link
that leads outside the output folder is refused, so a build cannot publish ``/etc/passwd``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DEPLOY_FILE", "Package", "PackageError", "create_package"]

DEPLOY_FILE = ".well-known/slipway-deploy.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16
_COMPRESS_LEVEL = 6
_CHUNK = 1024 * 1024


class PackageError(Exception):
    """The output folder cannot be packaged as it is; the message names the file."""


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    content_sha256: str
    files: int
    size: int
    deploy_info: dict[str, str]


def create_package(
    output_dir: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    deployment_id: str,
    site: str,
    commit: str,
    built_at: datetime,
    max_bytes: int | None = None,
) -> Package:
    """Zip ``output_dir`` into ``destination`` (written to a temporary name, then renamed)."""
    root = Path(output_dir).resolve()
    if not root.is_dir():
        raise PackageError(f"the output folder {output_dir} does not exist")
    files = sorted((rel, path) for rel, path in _files(root, root, "") if rel != DEPLOY_FILE)
    if not files:
        raise PackageError(f"the output folder {output_dir} holds no files")
    if built_at.tzinfo is None:
        raise ValueError("built_at must be timezone-aware")
    deploy_info = {
        "deployment": deployment_id,
        "site": site,
        "commit": commit,
        "built_at": built_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    deploy_bytes = (json.dumps(deploy_info, indent=2, sort_keys=True) + "\n").encode()
    entries: list[tuple[str, Path | bytes]] = [*files, (DEPLOY_FILE, deploy_bytes)]
    entries.sort(key=lambda entry: entry[0])

    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    manifest = hashlib.sha256()
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as archive:
            for name, source in entries:
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.external_attr = _FILE_MODE
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, whatever the worker's OS: the same bytes everywhere
                digest = hashlib.sha256()
                with archive.open(info, "w") as out:
                    if isinstance(source, bytes):
                        out.write(source)
                        digest.update(source)
                    else:
                        with source.open("rb") as handle:
                            while chunk := handle.read(_CHUNK):
                                out.write(chunk)
                                digest.update(chunk)
                if name != DEPLOY_FILE:
                    manifest.update(f"{name}\0{digest.hexdigest()}\n".encode())
        size = temporary.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise PackageError(f"the package is {size} bytes, more than the site's limit of {max_bytes}")
        zip_digest = _sha256_file(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return Package(
        path=target,
        sha256=zip_digest,
        content_sha256=manifest.hexdigest(),
        files=len(files),
        size=size,
        deploy_info=deploy_info,
    )


def _files(root: Path, folder: Path, prefix: str, chain: tuple[Path, ...] = ()) -> Iterator[tuple[str, Path]]:
    """(zip name, real path) of every file under ``folder``, following links that stay in ``root``."""
    chain = (*chain, folder.resolve())
    with os.scandir(folder) as listing:
        for item in listing:
            path = Path(item.path)
            name = f"{prefix}{item.name}"
            if item.is_symlink():
                real = path.resolve()
                if not real.is_relative_to(root):
                    raise PackageError(f"{name} is a link to {os.readlink(path)}, outside the output folder")
                if not real.exists():
                    raise PackageError(f"{name} is a broken link to {os.readlink(path)}")
                if real.is_dir() and real in chain:
                    raise PackageError(f"{name} is a link to a folder that contains it (a loop)")
            else:
                real = path
            if real.is_dir():
                yield from _files(root, real, f"{name}/", chain)
            elif real.is_file():
                yield name, real
            else:
                raise PackageError(f"{name} is not a regular file")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
