"""Workspace failures a caller can act on; the API maps each to one status code."""

from __future__ import annotations


class WorkspaceError(Exception):
    """Base class: ``code`` is the stable machine-readable name shown to API clients."""

    code = "workspace_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PathRejected(WorkspaceError):
    code = "path_rejected"


class NotFound(WorkspaceError):
    code = "not_found"


class AlreadyExists(WorkspaceError):
    code = "already_exists"


class NameConflict(WorkspaceError):
    """Another entry differs only in letter case (Azure Files is case-insensitive)."""

    code = "name_conflict"


class NotAFile(WorkspaceError):
    code = "not_a_file"


class FolderNotEmpty(WorkspaceError):
    code = "folder_not_empty"


class EtagMismatch(WorkspaceError):
    """Someone else changed the file since the caller read it."""

    code = "etag_mismatch"


class PreconditionRequired(WorkspaceError):
    code = "precondition_required"


class FileTooLarge(WorkspaceError):
    code = "file_too_large"


class ArchiveTooLarge(WorkspaceError):
    """The workspace zip is over SLIPWAY_ARCHIVE_MAX_MB where it cannot be streamed."""

    code = "archive_too_large"


class WorkspaceReadOnly(WorkspaceError):
    """GitHub manages the workspace; the message names the repository and branch."""

    code = "read_only"


class WorkspaceUnavailable(WorkspaceError):
    """The workspace folder is missing or cannot be used (share not mounted)."""

    code = "workspace_unavailable"
