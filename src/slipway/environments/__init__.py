"""Python packages per workflow: what a workflow asks for (its PEP 723 ``# /// script`` block
and the workspace's shared ``workflows/requirements.txt``), resolved by uv to a lock of exact,
hashed versions, and built once per lock into a virtual environment on local disk whose
interpreter runs the workflow's loads and steps.

- :mod:`.requirements`: reading the requirements, each with its file and line.
- :mod:`.resolution`: requirements to a :class:`Lock` (``uv pip compile``), cached by input.
- :mod:`.store`: :class:`Environments`, the folder of built environments: resolve, ensure
  (build once across threads and processes), sweep.
- :mod:`.uvcli`: how uv is found and run (its environment, its cache, no user configuration).
"""

from slipway.environments.requirements import (
    SHARED_REQUIREMENTS_FILE,
    Requirement,
    RequirementsError,
    requirements_of,
)
from slipway.environments.resolution import Lock, ResolutionError
from slipway.environments.store import EnvironmentBuildError, Environments

__all__ = [
    "SHARED_REQUIREMENTS_FILE",
    "EnvironmentBuildError",
    "Environments",
    "Lock",
    "Requirement",
    "RequirementsError",
    "ResolutionError",
    "requirements_of",
]
