"""Engine failures a caller can act on; the API maps each to one status code."""

from __future__ import annotations

from slipway.errors import DomainError


class EngineError(DomainError):
    code = "engine_error"


class WorkflowNotFound(EngineError):
    code = "workflow_not_found"
    status = 404


class WorkflowLoadFailed(EngineError):
    """The workflow file does not load (syntax error, import error, bad declaration)."""

    code = "workflow_load_failed"
    status = 422


class ParamsInvalid(EngineError):
    code = "params_invalid"
    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"params.{field}: {message}" if field else f"params: {message}")
        self.field = field


class RunNotFound(EngineError):
    code = "run_not_found"
    status = 404


class RunFinished(EngineError):
    """The run already ended; it cannot be canceled."""

    code = "run_finished"
    status = 409


class SnapshotRefused(EngineError):
    """The ``workflows/`` folder cannot be pinned for a run (too large, or a file is missing)."""

    code = "workflows_folder_refused"
    status = 422


class EnvironmentPreparing(EngineError):
    """The workflow's Python environment is being built; its description follows once it is."""

    code = "environment_preparing"
    status = 503
