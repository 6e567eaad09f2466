"""GPU UUIDs are unique network-wide: the first claimant keeps a UUID (SPEC 5.1).

A worker claims a UUID by reporting it; the storage records when each ``(miner, worker, UUID)``
was first seen. The earliest claim owns the UUID. Every later claim is a *conflict*: that copy is
excluded from its claimant's score and reported, so an operator can see who copies whose UUIDs.
Reporting someone else's UUID therefore gains nothing and takes nothing from the owner.

Ties on an identical ``first_seen`` go to the smaller miner hotkey, then the smaller worker id,
in plain string order: arbitrary, but the same on every validator.

A UUID that appears in challenge observations without any claim gets an *implicit* claim at its
earliest ``issued_at``; the storage should pass claims for every GPU, this only keeps a missing
row from handing out a UUID for free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from byteleap.scoring.observations import ChallengeObservation, GpuClaim


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


def resolve_gpu_ownership(
    claims: Iterable[GpuClaim],
    *,
    challenges: Iterable[ChallengeObservation] = (),
    miners: Iterable[str] | None = None,
) -> GpuOwnership:
    """Give each UUID to its earliest claim and list every later claim as a conflict.

    ``challenges`` supply implicit claims for ``(miner, worker, UUID)`` triples that have no
    stored claim. With ``miners`` given, only claims by those hotkeys count: a deregistered
    miner's old claims do not keep UUIDs from a registered one.
    """
    allowed = None if miners is None else frozenset(miners)
    # (uuid, hotkey, worker) -> (claim, implicit); the earliest stored claim per triple wins
    best: dict[tuple[str, str, str], tuple[GpuClaim, bool]] = {}
    for claim in claims:
        if allowed is not None and claim.miner_hotkey not in allowed:
            continue
        key = (claim.gpu_uuid, claim.miner_hotkey, claim.worker_id)
        held = best.get(key)
        if held is None or claim.first_seen < held[0].first_seen:
            best[key] = (claim, False)
    stored = frozenset(best)
    for obs in challenges:
        if allowed is not None and obs.miner_hotkey not in allowed:
            continue
        key = (obs.gpu_uuid, obs.miner_hotkey, obs.worker_id)
        if key in stored:
            continue
        held = best.get(key)
        if held is None or obs.issued_at < held[0].first_seen:
            inferred = GpuClaim(obs.gpu_uuid, obs.miner_hotkey, obs.worker_id, obs.issued_at)
            best[key] = (inferred, True)

    by_uuid: dict[str, list[tuple[GpuClaim, bool]]] = {}
    for claim, implicit in best.values():
        by_uuid.setdefault(claim.gpu_uuid, []).append((claim, implicit))

    owners: dict[str, GpuClaim] = {}
    conflicts: list[GpuConflict] = []
    for uuid, entries in by_uuid.items():
        entries.sort(key=lambda entry: entry[0].sort_key)
        owner = entries[0][0]
        owners[uuid] = owner
        for claim, implicit in entries[1:]:
            conflicts.append(
                GpuConflict(
                    gpu_uuid=uuid,
                    owner_hotkey=owner.miner_hotkey,
                    owner_worker_id=owner.worker_id,
                    owner_first_seen=owner.first_seen,
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
