"""The leases this miner routed: who sold each one, which worker and GPUs it holds, its life.

The table answers ``/lease/status``, keeps challenges off leased workers, routes job requests to
the worker that holds a lease (and only for the validator that started it), and bounds the
receipts the miner countersigns to the lease's life. With a :class:`~neurons.miner.store.MinerStore`
behind it, every change that matters is written through to SQLite, so a restarted miner still
knows its leases (the workers keep theirs across a reconnect too).

A lease is ``starting`` while the worker is asked, ``active`` once it acknowledged, and ``ended``
when stopped or when ``ends_at`` passes. ``starting`` is never stored: if the miner dies while
asking, the validator's retry starts the lease again (the worker accepts the same lease id twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from byteleap.errors import PeerUnavailable
from byteleap.protocol.validator_api import LeaseState

#: ended leases are remembered this long for ``/lease/status`` (and late receipts)
LEASE_RETENTION_S = 7 * 24 * 3600.0
#: most leases remembered; the oldest ended ones are dropped first
MAX_LEASES = 100_000


@dataclass
class LeaseRecord:
    lease_id: str
    owner: str  # the validator hotkey that started it
    worker_pubkey: str
    gpu_uuids: list[str]
    ends_at: int
    state: LeaseState
    updated: float
    #: unix time the lease was started (the worker acknowledged it)
    started_at: float = 0.0
    #: unix time it was stopped; None while it runs, or when it simply expired at ``ends_at``
    stopped_at: float | None = None

    @property
    def billable_until(self) -> float:
        """The lease's end for billing: when it was stopped, else ``ends_at``."""
        return (
            float(self.ends_at)
            if self.stopped_at is None
            else min(float(self.ends_at), self.stopped_at)
        )


class LeaseTable:
    """The leases in memory; the store (if any) is written by the API after each change."""

    def __init__(self, clock: Callable[[], float], records: Iterable[LeaseRecord] = ()) -> None:
        self._clock = clock
        self._leases: dict[str, LeaseRecord] = {r.lease_id: r for r in records}

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, lease_id: str) -> LeaseRecord | None:
        record = self._leases.get(lease_id)
        if record is not None and record.state == "active" and self._clock() >= record.ends_at:
            record.state = "ended"
            record.updated = self._clock()
        return record

    def put(self, record: LeaseRecord) -> None:
        self._prune()
        self._leases[record.lease_id] = record

    def discard(self, lease_id: str) -> None:
        self._leases.pop(lease_id, None)

    def records(self) -> list[LeaseRecord]:
        return list(self._leases.values())

    def leased(self, worker_pubkey: str) -> bool:
        """Whether a lease that has not ended holds (some GPUs of) this worker."""
        return any(
            record.worker_pubkey == worker_pubkey
            and self.get(record.lease_id) is not None
            and record.state in ("starting", "active")
            for record in list(self._leases.values())
        )

    def _prune(self) -> None:
        now = self._clock()
        for lease_id in list(self._leases):
            current = self.get(lease_id)
            if (
                current is not None
                and current.state == "ended"
                and now - current.updated > LEASE_RETENTION_S
            ):
                del self._leases[lease_id]
        if len(self._leases) >= MAX_LEASES:
            ended = sorted(
                (r for r in self._leases.values() if r.state == "ended"), key=lambda r: r.updated
            )
            for record in ended[: len(self._leases) - MAX_LEASES + 1]:
                del self._leases[record.lease_id]
            if len(self._leases) >= MAX_LEASES:
                raise PeerUnavailable("the miner's lease table is full")


__all__ = ["LEASE_RETENTION_S", "MAX_LEASES", "LeaseRecord", "LeaseTable"]
