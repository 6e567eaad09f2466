"""The validator's stored observations, as the scorer takes them in.

These are plain frozen dataclasses rather than pydantic models: a week of a large network is
millions of records, and a dataclass with a few cheap checks builds many times faster. Each record
checks what would otherwise corrupt a score silently (naive datetimes, negative counts, a verified
challenge without a throughput) and raises :class:`ValueError` when it is built, so a bad row
fails where it is read, not deep inside a sum.

Identities: a miner is its hotkey; a worker is ``(miner_hotkey, worker_id)``, where ``worker_id``
is whatever the storage uses for the worker's public key; a GPU is its NVML UUID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from byteleap.errors import Outcome

#: ``failure`` codes of an excused challenge that was the validator's own fault, never the
#: miner's: ``restart`` (closed in flight when the validator restarted), ``internal`` (a bug of
#: ours), ``storage`` (our database) and ``transient`` (our own TransientError, e.g. a verifier
#: process that died or no verdict reached). Every other excuse (``unavailable``, ``link``,
#: ``malformed``, ``rate_limited``, ``forbidden``, ...) is the miner's and draws on its excuse
#: budget. The store sets :attr:`ChallengeObservation.ours` from this set, and nothing else.
OUR_FAILURES: frozenset[str] = frozenset({"restart", "internal", "storage", "transient"})


def is_ours(outcome: Outcome, failure: str | None) -> bool:
    """Whether a stored challenge was excused for the validator's own fault."""
    return outcome is Outcome.EXCUSED and failure in OUR_FAILURES


def require_aware(name: str, value: datetime) -> None:
    """Refuse naive datetimes: comparing them with aware ones is an error or, worse, a lie."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")


def _require_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")


@dataclass(frozen=True, slots=True)
class ChallengeObservation:
    """One finished challenge of one GPU, with its scoring outcome.

    ``throughput_flops`` is the validator-measured ``R·2·m·n·k / elapsed`` (SPEC 4.4). It is
    required for a verified challenge and ignored for every other outcome.

    ``ours`` marks an excused challenge that failed on the validator's own side (a restart, its
    own bug, its database): it never counts against the miner. Every other excuse is the
    miner's word (busy, unavailable, a dropped link) and draws on the miner's excuse budget.
    Storage sets it from the stored failure code with :func:`is_ours` (:data:`OUR_FAILURES`).
    """

    miner_hotkey: str
    worker_id: str
    gpu_uuid: str
    issued_at: datetime
    outcome: Outcome
    throughput_flops: float | None = None
    ours: bool = False

    def __post_init__(self) -> None:
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("worker_id", self.worker_id)
        _require_text("gpu_uuid", self.gpu_uuid)
        require_aware("issued_at", self.issued_at)
        if not isinstance(self.outcome, Outcome):
            raise TypeError(f"outcome must be an Outcome, got {self.outcome!r}")
        tp = self.throughput_flops
        if tp is not None and not (math.isfinite(tp) and tp >= 0.0):
            raise ValueError(f"throughput_flops must be finite and >= 0, got {tp}")
        if self.outcome is Outcome.VERIFIED and (tp is None or tp <= 0.0):
            raise ValueError("a verified challenge needs a positive throughput_flops")


@dataclass(frozen=True, slots=True)
class AvailabilityObservation:
    """One inventory poll (or one stored bucket) of a worker.

    ``observed_at`` may be the poll time or the start of the stored bucket: both fall in the same
    bucket (see :func:`byteleap.scoring.availability.bucket_index`). ``gpus`` is the number of GPUs
    the worker reported.
    """

    miner_hotkey: str
    worker_id: str
    gpus: int
    observed_at: datetime
    healthy: bool

    def __post_init__(self) -> None:
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("worker_id", self.worker_id)
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"gpus must be an int >= 0, got {self.gpus!r}")
        require_aware("observed_at", self.observed_at)


@dataclass(frozen=True, slots=True)
class AvailabilityCount:
    """A worker's availability over the horizon, aggregated by the database.

    ``online_buckets`` is the number of buckets in the horizon in which the worker reported
    healthy. ``online_gpu_buckets`` is the sum, over those buckets, of the GPUs it reported
    healthy that *count*: with verification information (SPEC 5.5), only the buckets in which
    the worker was verified within the 24 hours before, or was under a known lease;
    ``unverified_gpu_buckets`` holds the rest, the GPU-buckets not counted for lack of a
    verification (explanations show it). Leave ``online_gpu_buckets`` ``None`` when the count
    never changes, nothing is left out, and it is ``gpus * online_buckets``. ``gpus`` is the
    most GPUs the worker reported in the horizon.
    """

    miner_hotkey: str
    worker_id: str
    gpus: int
    online_buckets: int
    online_gpu_buckets: int | None = None
    unverified_gpu_buckets: int = 0

    def __post_init__(self) -> None:
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("worker_id", self.worker_id)
        for name in ("gpus", "online_buckets", "unverified_gpu_buckets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        gb = self.online_gpu_buckets
        if gb is not None and (isinstance(gb, bool) or not isinstance(gb, int) or gb < 0):
            raise ValueError(f"online_gpu_buckets must be an int >= 0, got {gb!r}")
        if gb is None and self.unverified_gpu_buckets:
            raise ValueError("unverified_gpu_buckets needs an explicit online_gpu_buckets")
        if gb is not None and gb + self.unverified_gpu_buckets > self.gpus * self.online_buckets:
            raise ValueError(
                f"online_gpu_buckets ({gb}) + unverified_gpu_buckets "
                f"({self.unverified_gpu_buckets}) exceeds gpus * online_buckets "
                f"({self.gpus} * {self.online_buckets})"
            )

    @property
    def gpu_buckets(self) -> int:
        """GPU-buckets online that count: the numerator's contribution of this worker."""
        if self.online_gpu_buckets is None:
            return self.gpus * self.online_buckets
        return self.online_gpu_buckets


@dataclass(frozen=True, slots=True)
class LeaseUsage:
    """A stretch of billed lease usage, taken from receipts signed by validator and miner.

    Only the part of ``[start, end)`` inside the lease window counts. Stretches of the same
    ``(miner_hotkey, lease_id)`` that overlap count once.
    """

    miner_hotkey: str
    lease_id: str
    price_per_gpu_hour: float
    gpus: int
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("lease_id", self.lease_id)
        price = self.price_per_gpu_hour
        if isinstance(price, bool) or not (math.isfinite(price) and price >= 0.0):
            raise ValueError(f"price_per_gpu_hour must be finite and >= 0, got {price!r}")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"gpus must be an int >= 0, got {self.gpus!r}")
        require_aware("start", self.start)
        require_aware("end", self.end)
        if self.end < self.start:
            raise ValueError(f"lease usage ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True, slots=True)
class LeaseInterval:
    """When a worker was leased: ``[start, end)``, with ``end=None`` while the lease is open.

    Used only for the challenge carry-over: leased time does not count in a worker's challenge
    window, because a leased worker is never challenged.
    """

    miner_hotkey: str
    worker_id: str
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("worker_id", self.worker_id)
        require_aware("start", self.start)
        if self.end is not None:
            require_aware("end", self.end)
            if self.end < self.start:
                raise ValueError(
                    f"lease interval ends ({self.end}) before it starts ({self.start})"
                )


@dataclass(frozen=True, slots=True)
class GpuClaim:
    """A worker reporting a GPU UUID: first seen at ``first_seen``, last at ``last_seen``.

    ``last_seen`` lets a claim expire (``ScoringParams.claim_expiry`` unseen, see
    :mod:`byteleap.scoring.ownership`) and lets a miner move a UUID between its own workers;
    ``None`` means unknown: the claim never expires and never displaces another.
    """

    gpu_uuid: str
    miner_hotkey: str
    worker_id: str
    first_seen: datetime
    last_seen: datetime | None = None

    def __post_init__(self) -> None:
        _require_text("gpu_uuid", self.gpu_uuid)
        _require_text("miner_hotkey", self.miner_hotkey)
        _require_text("worker_id", self.worker_id)
        require_aware("first_seen", self.first_seen)
        if self.last_seen is not None:
            require_aware("last_seen", self.last_seen)
            if self.last_seen < self.first_seen:
                raise ValueError(
                    f"claim last seen ({self.last_seen}) before it was first seen "
                    f"({self.first_seen})"
                )

    @property
    def sort_key(self) -> tuple[datetime, str, str]:
        """Earliest first; ties by hotkey, then worker id (plain string order)."""
        return (self.first_seen, self.miner_hotkey, self.worker_id)
