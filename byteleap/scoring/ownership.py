"""GPU UUIDs are unique network-wide: the first claimant keeps a UUID (SPEC 5.1).

A worker claims a UUID by reporting it; the storage records when each ``(miner, worker, UUID)``
was first seen. The earliest claim owns the UUID. Every later claim is a *conflict*: that copy is
excluded from its claimant's score and reported, so an operator can see who copies whose UUIDs.
Reporting someone else's UUID therefore gains nothing and takes nothing from the owner.

Ties on an identical ``first_seen`` go to the smaller miner hotkey, then the smaller worker id,
in plain string order: arbitrary, but the same on every validator.

**Claims expire, and belong to the miner** (SPEC 5.5). Given ``now`` and a ``claim_expiry``
(7 days by default), ownership is decided per *miner*:

- A miner's claim of a UUID is the chain of its workers' claims ``[first_seen, last_seen]`` with
  gaps shorter than the expiry; it starts at the chain's earliest ``first_seen``. So a UUID moved
  from one of the miner's workers to another (a re-keyed worker) keeps its start.
- A miner's claim whose UUID none of its workers has reported for ``claim_expiry`` (its latest
  ``last_seen`` is that old) has *expired*: it owns nothing and blocks nobody.
- Of the claims that have not expired, the one with the earliest start owns the UUID; ties go to
  the smaller hotkey.
- Inside the owning miner the copy that counts is the one reported most recently (then the
  earliest ``first_seen``, then the smaller worker id). Another of its workers reporting the UUID
  in the same poll is a ``same_miner`` conflict (one card, two copies); a worker that reported it
  only earlier has simply handed it over and is not listed.
- Every claim of another miner that has not expired is a conflict.

Without ``now`` or ``claim_expiry`` nothing expires, and claims without ``last_seen`` never expire
and count as reported before any claim that has one.

A UUID that appears in challenge observations without any claim gets an *implicit* claim at its
earliest ``issued_at``; the storage should pass claims for every GPU, this only keeps a missing
row from handing out a UUID for free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from byteleap.scoring.observations import ChallengeObservation, GpuClaim, require_aware

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class GpuConflict:
    """A later claim of a UUID that someone else owns. The claimant's copy is excluded."""

    gpu_uuid: str
    owner_hotkey: str
    owner_worker_id: str
    owner_first_seen: datetime
    claimant_hotkey: str
    claimant_worker_id: str
    claimant_first_seen: datetime
    #: the claim was inferred from challenge observations, not stored
    implicit: bool = False

    @property
    def same_miner(self) -> bool:
        """The claimant is another worker of the owner's own miner."""
        return self.owner_hotkey == self.claimant_hotkey

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_uuid": self.gpu_uuid,
            "owner_hotkey": self.owner_hotkey,
            "owner_worker_id": self.owner_worker_id,
            "owner_first_seen": self.owner_first_seen.isoformat(),
            "claimant_hotkey": self.claimant_hotkey,
            "claimant_worker_id": self.claimant_worker_id,
            "claimant_first_seen": self.claimant_first_seen.isoformat(),
            "implicit": self.implicit,
            "same_miner": self.same_miner,
        }


@dataclass(frozen=True, slots=True)
class GpuOwnership:
    """Who owns each UUID, and every conflicting claim."""

    #: gpu_uuid -> the winning claim
    owners: dict[str, GpuClaim]
    #: sorted by (gpu_uuid, claimant first_seen, claimant hotkey, claimant worker id)
    conflicts: tuple[GpuConflict, ...]

    def owns(self, miner_hotkey: str, worker_id: str, gpu_uuid: str) -> bool:
        """Whether this worker's copy of ``gpu_uuid`` counts. Unknown UUIDs count."""
        owner = self.owners.get(gpu_uuid)
        if owner is None:
            return True
        return owner.miner_hotkey == miner_hotkey and owner.worker_id == worker_id


def _merge(held: GpuClaim, other: GpuClaim) -> GpuClaim:
    """Two claims of one (UUID, miner, worker): the earliest first and the latest last seen."""
    if held.last_seen is None or other.last_seen is None:
        last = held.last_seen or other.last_seen
    else:
        last = max(held.last_seen, other.last_seen)
    first = min(held.first_seen, other.first_seen)
    if first == held.first_seen and last == held.last_seen:
        return held
    return GpuClaim(held.gpu_uuid, held.miner_hotkey, held.worker_id, first, last)


def _recency(claim: GpuClaim) -> tuple[int, datetime, str]:
    """Sort key of a miner's claims of one UUID: the most recently reported first (a claim
    without ``last_seen`` last), then the earliest ``first_seen``, then the worker id."""
    seen = claim.last_seen
    newest_first = 1 if seen is None else -((seen - _EPOCH) // _MICROSECOND)
    return (newest_first, claim.first_seen, claim.worker_id)


def _chain_start(claims: list[GpuClaim], expiry: timedelta | None) -> datetime:
    """Start of a miner's current claim: its workers' claims joined while the gap between one
    claim's last sighting and the next one's first is shorter than ``expiry``."""
    ordered = sorted(claims, key=lambda c: c.first_seen)
    start = ordered[0].first_seen
    reach: datetime | None = ordered[0].last_seen or ordered[0].first_seen
    unbounded = ordered[0].last_seen is None
    for claim in ordered[1:]:
        lapsed = expiry is not None and not unbounded and reach is not None
        if lapsed and claim.first_seen - reach >= expiry:  # type: ignore[operator]
            start = claim.first_seen  # the earlier claims lapsed before this one began
        if claim.last_seen is None:
            unbounded = True
        elif reach is None or claim.last_seen > reach:
            reach = claim.last_seen
    return start


def resolve_gpu_ownership(
    claims: Iterable[GpuClaim],
    *,
    challenges: Iterable[ChallengeObservation] = (),
    miners: Iterable[str] | None = None,
    now: datetime | None = None,
    claim_expiry: timedelta | None = None,
) -> GpuOwnership:
    """Give each UUID to its earliest miner claim that has not expired, the copy to that miner's
    most recently reporting worker, and list every other live claim as a conflict.

    ``challenges`` supply implicit claims (first seen at their earliest ``issued_at``, no
    ``last_seen``) for ``(miner, worker, UUID)`` triples that have no stored claim. With
    ``miners`` given, only claims by those hotkeys count: a deregistered miner's old claims do
    not keep UUIDs from a registered one. With ``now`` and ``claim_expiry`` given, a miner's
    claim that none of its workers reported in the last ``claim_expiry`` has expired.
    """
    if now is not None:
        require_aware("now", now)
    expiry = claim_expiry if now is not None else None
    allowed = None if miners is None else frozenset(miners)
    # (uuid, hotkey, worker) -> (claim, implicit); duplicates of a stored triple are merged
    best: dict[tuple[str, str, str], tuple[GpuClaim, bool]] = {}
    for claim in claims:
        if allowed is not None and claim.miner_hotkey not in allowed:
            continue
        key = (claim.gpu_uuid, claim.miner_hotkey, claim.worker_id)
        held = best.get(key)
        best[key] = (claim if held is None else _merge(held[0], claim), False)
    stored = frozenset(best)
    for obs in challenges:
        if allowed is not None and obs.miner_hotkey not in allowed:
            continue
        key = (obs.gpu_uuid, obs.miner_hotkey, obs.worker_id)
        if key in stored:
            continue
        seen = GpuClaim(obs.gpu_uuid, obs.miner_hotkey, obs.worker_id, obs.issued_at)
        held = best.get(key)
        best[key] = (seen if held is None else _merge(held[0], seen), True)

    # uuid -> hotkey -> [(claim, implicit)]
    by_uuid: dict[str, dict[str, list[tuple[GpuClaim, bool]]]] = {}
    for claim, implicit in best.values():
        by_uuid.setdefault(claim.gpu_uuid, {}).setdefault(claim.miner_hotkey, []).append(
            (claim, implicit)
        )

    def alive(claim: GpuClaim) -> bool:
        if expiry is None or now is None or claim.last_seen is None:
            return True
        return now - claim.last_seen < expiry

    owners: dict[str, GpuClaim] = {}
    conflicts: list[GpuConflict] = []
    for uuid, per_miner in by_uuid.items():
        # each miner's live claim: (start, hotkey, its claims, most recent first)
        live: list[tuple[datetime, str, list[tuple[GpuClaim, bool]]]] = []
        for hotkey, entries in per_miner.items():
            entries.sort(key=lambda entry: _recency(entry[0]))
            if not alive(entries[0][0]):
                continue  # expired: none of the miner's workers reported it for too long
            start = _chain_start([claim for claim, _ in entries], expiry)
            live.append((start, hotkey, entries))
        if not live:
            continue
        live.sort(key=lambda item: (item[0], item[1]))
        owner_start, _, owner_entries = live[0]
        owner = owner_entries[0][0]
        owners[uuid] = owner
        rivals = [
            entry
            for entry in owner_entries[1:]
            if entry[0].last_seen == owner.last_seen  # reported beside the owner's copy
        ]
        for _, _, entries in live[1:]:
            rivals.extend(entry for entry in entries if alive(entry[0]))
        for claim, implicit in rivals:
            conflicts.append(
                GpuConflict(
                    gpu_uuid=uuid,
                    owner_hotkey=owner.miner_hotkey,
                    owner_worker_id=owner.worker_id,
                    owner_first_seen=owner_start,
                    claimant_hotkey=claim.miner_hotkey,
                    claimant_worker_id=claim.worker_id,
                    claimant_first_seen=claim.first_seen,
                    implicit=implicit,
                )
            )
    conflicts.sort(
        key=lambda c: (c.gpu_uuid, c.claimant_first_seen, c.claimant_hotkey, c.claimant_worker_id)
    )
    return GpuOwnership(owners=owners, conflicts=tuple(conflicts))
