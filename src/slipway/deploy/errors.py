"""Deploy failures a caller can act on; the API maps each to one status code."""

from __future__ import annotations

from slipway.errors import DomainError


class DeployError(DomainError):
    code = "deploy_error"


class DeployRequestInvalid(DeployError):
    """A deployment request (or a site name) breaks a rule; ``field`` names the culprit."""

    code = "deploy_request_invalid"
    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class DeploymentNotFound(DeployError):
    code = "deployment_not_found"
    status = 404


class SiteNotFound(DeployError):
    code = "site_not_found"
    status = 404


class TransitionRefused(DeployError):
    """The deployment cannot move from its status to the one asked for (a finished deployment
    never changes)."""

    code = "transition_refused"
    status = 409

    def __init__(self, deployment_id: str, from_status: str, to_status: str, reason: str = "") -> None:
        super().__init__(
            f"deployment {deployment_id} cannot go from {from_status} to {to_status}"
            + (f": {reason}" if reason else "")
        )
        self.deployment_id = deployment_id
        self.from_status = from_status
        self.to_status = to_status


class PublishLeaseLost(DeployError):
    """The deployment changed what a site serves without holding the site's publish lease."""

    code = "publish_lease_lost"
    status = 409
