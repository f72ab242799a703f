"""The base of domain failures that carry their own HTTP status (engine, deploy).

Each subclass names a stable ``code`` for API clients and the ``status`` the API answers with;
the API maps them all in one handler.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
