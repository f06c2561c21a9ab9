"""Domain errors: what services (and the Celery worker) raise; each carries its HTTP answer.

They are ApiError subclasses, so ``app/errors.py`` turns them into the contract's body in its
one handler; the service code names the situation, not the status.
"""
from app.errors import ApiError


class QuotaExhausted(ApiError):
    """The probe quota cannot cover the request (429 quota_exceeded)."""

    def __init__(self, message, headers=None):
        super().__init__(429, message, headers, code="quota_exceeded")


class CapacityExceeded(ApiError):
    """This worker runs (or streams) as much as it can (503 server_busy)."""

    def __init__(self, message="The server is running as many probes as it can; retry shortly", headers=None):
        super().__init__(503, message, headers or {"Retry-After": "5"}, code="server_busy")


class TargetRefusedError(ApiError):
    """A special-purpose target the policy does not allow (403 target_refused)."""

    def __init__(self, message):
        super().__init__(403, message, code="target_refused")


class NotFound(ApiError):
    """Not there, or not the caller's (404 not_found)."""

    def __init__(self, message):
        super().__init__(404, message, code="not_found")


class NoMatchingLocation(ApiError):
    """No online location matches a filter (400 no_matching_location)."""

    def __init__(self, message):
        super().__init__(400, message, code="no_matching_location")


class ServiceUnavailable(ApiError):
    """A dependency (broker, agents) is away (503 service_unavailable)."""

    def __init__(self, message, retry_after="5"):
        super().__init__(503, message, {"Retry-After": retry_after}, code="service_unavailable")
