"""Which GPUs can be offered, and which worker a lease request gets: pure functions.

Everything comes in as plain records (the store's :class:`WorkerRow`\\ s, the verification
summary, the workers our own leases hold) with the clock and the price policy passed in, so
every decision can be replayed in a unit test.

**What can be offered.** A GPU is leasable when its worker is online, reports ``idle``, has an
endpoint, is not held by one of our pending or active leases, has no fraud verdict in the
verification window; and the GPU itself is owned by that worker (not a later claimant's copy)
and passed a challenge within ``leases.verified_within_hours``.

**Models are canonical.** Every GPU is identified against the model catalogue
(:mod:`byteleap.hardware`): it is offered, matched and priced by its model id, never by the
free text it reported. A name that matches no model or several is offered only as ``unknown``
(a renter asking for "H200" never gets a card that merely has "H200" somewhere in its name), a
GPU whose memory or compute capability contradicts the catalogue is not offered at all, and a
CPU device is offered only where ``challenge.cpu_workers`` is set, as ``cpu``, never as a GPU.

**One worker per lease.** A lease names one worker: the miner routes it to one worker link and
the worker runs its jobs with exactly the leased GPUs. A request for more GPUs than any single
worker can offer is refused rather than split, because a job cannot span several hosts.

**Choosing the worker.** Among workers with at least ``count`` matching GPUs at or below the
renter's maximum price: the cheapest first, then the best fit (fewest matching GPUs left over,
so a large worker stays available for a large request), then the most recently verified, then
by identity for determinism. Within the worker the cheapest, then smallest matching GPUs are
taken. The lease's price per GPU-hour is the highest price among the GPUs taken.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from byteleap.aliases import WorkerRef
from byteleap.hardware import CATALOGUE, CPU_MODEL, UNKNOWN
from byteleap.sessions.round_planner import identify_gpu
from neurons.validator.store.lease_rows import Verification
from neurons.validator.store.records import GpuSnapshot, WorkerRow

#: ``price_for(model_id) -> price per GPU-hour`` (``LeasesSection.price_for``)
PricePolicy = Callable[[str], float]


@dataclass(frozen=True, slots=True)
class Offer:
    """One worker's leasable GPUs."""

    miner_hotkey: str
    worker_pubkey: str
    endpoint: str
    gpus: tuple[GpuSnapshot, ...]
    #: newest verified challenge among the offered GPUs
    verified_at: datetime
    #: uuid -> canonical model id (catalogue id, ``unknown`` or ``cpu``)
    model_ids: Mapping[str, str]

    def model_of(self, gpu: GpuSnapshot) -> str:
        return self.model_ids[gpu.uuid]

    @property
    def key(self) -> WorkerRef:
        return (self.miner_hotkey, self.worker_pubkey)


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """What a renter asks for. ``model`` is a model id (``"h100-sxm"``, ``"unknown"``) or a
    case-insensitive fragment of a catalogue model's display name (``"H100"``); ``None``
    accepts any model."""

    count: int
    duration_hours: float
    max_price_per_gpu_hour: float
    model: str | None = None
    min_vram_mib: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    offer: Offer
    gpus: tuple[GpuSnapshot, ...]
    price_per_gpu_hour: float

    @property
    def gpu_uuids(self) -> tuple[str, ...]:
        """The leased GPUs, sorted (the receipts' spelling)."""
        return tuple(sorted(g.uuid for g in self.gpus))


@dataclass(frozen=True, slots=True)
class NoMatch:
    """Why nothing matched, in words for the renter."""

    reason: str


@dataclass(frozen=True, slots=True)
class CapacityGroup:
    """Leasable GPUs of one model and memory size."""

    #: canonical model id
    model: str
    vram_mib: int
    count: int
    #: the most of them one lease can get (they sit on one worker)
    max_per_lease: int
    price_per_gpu_hour: float


def leasable_gpus(
    worker: WorkerRow,
    verification: Verification,
    held: Collection[WorkerRef],
    cutoff: datetime,
    *,
    cpu_workers: bool = False,
) -> tuple[tuple[GpuSnapshot, ...], datetime | None, dict[str, str]]:
    """The GPUs of ``worker`` that may be leased now, the newest of their verifications, and
    their model ids."""
    key = (worker.miner_hotkey, worker.worker_pubkey)
    if (
        not worker.online
        or worker.state != "idle"
        or not worker.endpoint
        or key in held
        or key in verification.fraud
    ):
        return (), None, {}
    verified = verification.verified.get(key, {})
    models: dict[str, str] = {}
    picked: list[GpuSnapshot] = []
    for g in worker.gpus:
        seen = verified.get(g.uuid)
        if g.uuid in worker.conflicted_gpus or seen is None or seen < cutoff:
            continue
        identity = identify_gpu(g)
        if not identity.verifiable or (identity.model_id == CPU_MODEL and not cpu_workers):
            continue
        models[g.uuid] = identity.model_id
        picked.append(g)
    gpus = tuple(picked)
    newest = max((verified[g.uuid] for g in gpus), default=None)
    return gpus, newest, models


def offers(
    workers: Sequence[WorkerRow],
    verification: Verification,
    held: Collection[WorkerRef],
    *,
    now: datetime,
    verified_within: timedelta,
    cpu_workers: bool = False,
) -> list[Offer]:
    """Every worker with at least one leasable GPU."""
    cutoff = now - verified_within
    out = []
    for worker in workers:
        gpus, newest, models = leasable_gpus(
            worker, verification, held, cutoff, cpu_workers=cpu_workers
        )
        if gpus and newest is not None and worker.endpoint:
            out.append(
                Offer(
                    worker.miner_hotkey, worker.worker_pubkey, worker.endpoint, gpus, newest, models
                )
            )
    return out


def capacity(all_offers: Sequence[Offer], price_for: PricePolicy) -> list[CapacityGroup]:
    """Leasable GPUs grouped by (model, memory), sorted by model then memory."""
    groups: dict[tuple[str, int], list[int]] = {}
    for offer in all_offers:
        per_worker: dict[tuple[str, int], int] = {}
        for gpu in offer.gpus:
            group = (offer.model_of(gpu), gpu.memory_mib)
            per_worker[group] = per_worker.get(group, 0) + 1
        for group, count in per_worker.items():
            groups.setdefault(group, []).append(count)
    return [
        CapacityGroup(
            model=model,
            vram_mib=vram,
            count=sum(counts),
            max_per_lease=max(counts),
            price_per_gpu_hour=price_for(model),
        )
        for (model, vram), counts in sorted(groups.items())
    ]


def model_matches(model_id: str, wanted: str | None) -> bool:
    """Whether a GPU of ``model_id`` answers a request for ``wanted`` (see LeaseRequest)."""
    if wanted is None:
        return True
    wanted = wanted.strip().lower()
    if wanted == model_id:
        return True
    model = CATALOGUE.get(model_id)
    if model is None:  # unknown and cpu answer only to their own id
        return False
    return bool(wanted) and wanted not in (UNKNOWN, CPU_MODEL) and wanted in model.name.lower()


def gpu_matches(gpu: GpuSnapshot, model_id: str, request: LeaseRequest) -> bool:
    if gpu.memory_mib < request.min_vram_mib:
        return False
    return model_matches(model_id, request.model)


def choose(
    all_offers: Sequence[Offer], request: LeaseRequest, price_for: PricePolicy
) -> Match | NoMatch:
    """The worker and GPUs ``request`` gets (see the module docstring for the order)."""
    if request.count < 1:
        raise ValueError("a lease needs at least one GPU")
    candidates: list[tuple[tuple[float, int, float, str, str], Match]] = []
    enough_gpus = False
    for offer in all_offers:
        matching = sorted(
            (g for g in offer.gpus if gpu_matches(g, offer.model_of(g), request)),
            key=lambda g: (price_for(offer.model_of(g)), g.memory_mib, g.uuid),
        )
        if len(matching) < request.count:
            continue
        enough_gpus = True
        taken = tuple(matching[: request.count])
        price = max(price_for(offer.model_of(g)) for g in taken)
        if price > request.max_price_per_gpu_hour:
            continue
        rank = (
            price,
            len(matching) - request.count,
            -offer.verified_at.timestamp(),
            offer.miner_hotkey,
            offer.worker_pubkey,
        )
        candidates.append((rank, Match(offer, taken, price)))
    if candidates:
        return min(candidates, key=lambda item: item[0])[1]
    wanted = f"{request.count} GPU(s)" + (f" matching {request.model!r}" if request.model else "")
    if request.min_vram_mib:
        wanted += f" with at least {request.min_vram_mib} MiB"
    if enough_gpus:
        return NoMatch(
            f"{wanted} are available only above {request.max_price_per_gpu_hour:g} per GPU-hour"
        )
    return NoMatch(f"no single worker has {wanted} available now")


__all__ = [
    "CapacityGroup",
    "LeaseRequest",
    "Match",
    "NoMatch",
    "Offer",
    "PricePolicy",
    "capacity",
    "choose",
    "gpu_matches",
    "leasable_gpus",
    "model_matches",
    "offers",
]
