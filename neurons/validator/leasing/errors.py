"""Why a renter's request was refused.

These extend the project's one error tree (``byteleap.errors.ByteLeapError``) with the refusals
of the lease business; each has a stable ``code`` that the renter API sends back, and the API
maps the class to an HTTP status (``neurons.validator.renter.errors``). Failures of a miner or of
the database keep their own types (``PeerTimeout``, ``LinkError``, ``StorageError``, ...).
"""

from __future__ import annotations

from byteleap.errors import ByteLeapError


class LeaseRefused(ByteLeapError):
    """A renter's lease request cannot be served as asked."""

    code = "lease_refused"


class NotFound(LeaseRefused):
    """No such lease, job or artifact (or it belongs to another renter)."""

    code = "not_found"


class NoCapacity(LeaseRefused):
    """No worker offers what the request asks for."""

    code = "no_capacity"


class SpendLimitExceeded(LeaseRefused):
    """The booking would take the renter past its spending limit."""

    code = "spend_limit_exceeded"


class DurationTooLong(LeaseRefused):
    """The lease would last longer than ``leases.max_duration_hours``."""

    code = "duration_exceeds_limit"


class LeaseNotActive(LeaseRefused):
    """The lease has ended (or never started): it takes no new jobs and cannot be extended."""

    code = "lease_not_active"


class LeaseStartFailed(LeaseRefused):
    """The miner or its worker refused to start the lease."""

    code = "lease_start_failed"


class JobRequestRefused(LeaseRefused):
    """The worker refused a job request; ``code`` is the worker's reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


__all__ = [
    "DurationTooLong",
    "JobRequestRefused",
    "LeaseNotActive",
    "LeaseRefused",
    "LeaseStartFailed",
    "NoCapacity",
    "NotFound",
    "SpendLimitExceeded",
]
