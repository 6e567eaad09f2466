"""The round planner: when the next challenge epoch starts, and what it challenges (SPEC 4.5).

Pure and synchronous: :meth:`EpochPlanner.plan` takes the workers the store knows, the time, what
is in flight, the calibrated expected throughputs and the miners' round trips, and returns every
challenge of the epoch plus why every other worker was left out. The clock and the random source
are passed in, so every decision can be replayed in a test. What happens to the plan once it is
made is :class:`byteleap.sessions.epoch_round.EpochRound`'s.

**Why epochs.** A proof of computation is not a proof of hardware: one card answering several
claims one after another passes them all when each claim is timed alone. So every idle,
challengeable device of every miner is challenged in the same epoch, dispatched within
``epoch_spread_s``, and a card behind two claims must finish two challenges before one deadline
(at most ``deadline_factor`` <= 1.5 x the expected time plus the miner's round trip). An epoch's
start is ``interval_s`` x a random factor in ``[1 - jitter, 1 + jitter]`` after the previous one,
drawn from the CSPRNG the daemon passes in, so nobody can line hardware up for it.

**What is challenged.** Each worker's devices are identified against the model catalogue
(:func:`byteleap.hardware.identify`):

- GPUs another claimant owns (``conflicted_gpus``) are never challenged;
- a CPU device (uuid ``CPU-``) is challenged only with ``challenge.cpu_workers`` (devnet, tests),
  with ``challenge.cpu`` as configured;
- a GPU whose memory or compute capability contradicts its model's catalogue entry is
  unverifiable: not challenged (nor leased), with the reason kept in the plan;
- a worker whose challengeable GPUs are of more than one model is skipped: its devices run one
  shared set of parameters side by side, so the fast ones would finish early and have time to
  spare for another claim (run one worker per model instead);
- the GPU challenge is sized so that ``target_seconds`` pass at the model's calibrated expected
  throughput (:mod:`byteleap.challenge.sizing`).
"""

from __future__ import annotations

import enum
import functools
import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from byteleap.aliases import WorkerRef
from byteleap.challenge.params import ChallengeParams
from byteleap.challenge.sizing import ExpectedRates, Sizing, size_challenge
from byteleap.config.challenge import ChallengeSection
from byteleap.hardware import CPU_MODEL, CPU_UUID_PREFIX, UNKNOWN, DeviceIdentity, identify
from byteleap.sessions.round_records import GpuSnapshot, WorkerRow


class Skip(enum.StrEnum):
    """Why a worker is not challenged in this epoch."""

    LEASED = "leased"  # under a lease this validator knows of
    OFFLINE = "offline"
    IN_FLIGHT = "in_flight"
    NO_ENDPOINT = "no_endpoint"
    NO_DEVICES = "no_devices"  # none listed, or every one is claimed by someone earlier
    CPU_DISABLED = "cpu_disabled"  # a CPU device where challenge.cpu_workers is false
    UNVERIFIABLE = "unverifiable"  # every GPU contradicts its catalogue entry
    MIXED_MODELS = "mixed_models"  # challengeable GPUs of more than one model


@dataclass(frozen=True, slots=True)
class PlannedChallenge:
    """One challenge of an epoch: a worker, the devices to prove, and the parameters."""

    miner_hotkey: str
    miner_uid: int
    endpoint: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    #: the name each device reported (stored with the challenge)
    gpu_models: Mapping[str, str]
    #: each device's identity in the catalogue (for the throughput checks)
    identities: Mapping[str, DeviceIdentity]
    sizing: Sizing

    @property
    def key(self) -> WorkerRef:
        return (self.miner_hotkey, self.worker_pubkey)

    @property
    def params(self) -> ChallengeParams:
        return self.sizing.params

    @property
    def model_id(self) -> str:
        return self.sizing.model_id


@dataclass(frozen=True, slots=True)
class EpochPlan:
    """What one epoch challenges, and why everything else is left out."""

    challenges: tuple[PlannedChallenge, ...]
    skipped: Mapping[WorkerRef, Skip] = field(default_factory=dict)
    #: (miner, worker, gpu uuid) -> why the GPU cannot be verified
    unverifiable: Mapping[tuple[str, str, str], str] = field(default_factory=dict)

    def by_miner(self) -> dict[str, list[PlannedChallenge]]:
        """The challenges grouped by miner, in plan order (one request per miner)."""
        out: dict[str, list[PlannedChallenge]] = {}
        for planned in self.challenges:
            out.setdefault(planned.miner_hotkey, []).append(planned)
        return out

    @property
    def gpus(self) -> int:
        return sum(len(p.gpu_uuids) for p in self.challenges)


def is_cpu_device(gpu: GpuSnapshot) -> bool:
    return gpu.uuid.startswith(CPU_UUID_PREFIX)


@functools.lru_cache(maxsize=4096)
def _identify_model(
    cpu: bool, name: str, memory_mib: int, compute_capability: str | None
) -> DeviceIdentity:
    # a GPU's identity depends on its uuid only through the CPU- prefix: one catalogue lookup
    # per distinct (name, memory, capability) instead of one per GPU of a 200,000-GPU epoch
    return identify("CPU-" if cpu else "GPU-", name, memory_mib, compute_capability)


def identify_gpu(gpu: GpuSnapshot) -> DeviceIdentity:
    return _identify_model(is_cpu_device(gpu), gpu.model, gpu.memory_mib, gpu.compute_capability)


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The devices of one worker an epoch challenges (or why none)."""

    device_class: str  # "cpu" or "gpu"
    devices: tuple[GpuSnapshot, ...]
    identities: Mapping[str, DeviceIdentity]
    skip: Skip | None = None
    #: uuid -> reason, for GPUs left out as unverifiable
    unverifiable: Mapping[str, str] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return next(iter(self.identities.values())).model_id


def challenge_devices(worker: WorkerRow, *, cpu_workers: bool) -> DeviceChoice:
    """The devices of ``worker`` to challenge, their class and identities (see the module)."""
    usable = tuple(g for g in worker.gpus if g.uuid not in worker.conflicted_gpus)
    cpus = tuple(g for g in usable if is_cpu_device(g))
    if cpus:
        # a worker listing a CPU device runs the NumPy backend, which can run only that device
        if not cpu_workers:
            return DeviceChoice("cpu", (), {}, Skip.CPU_DISABLED)
        ids = {g.uuid: identify_gpu(g) for g in cpus}
        return DeviceChoice("cpu", cpus, ids)
    ids = {g.uuid: identify_gpu(g) for g in usable}
    bad = {uuid: i.unverifiable for uuid, i in ids.items() if i.unverifiable is not None}
    good = tuple(g for g in usable if g.uuid not in bad)
    if not good:
        return DeviceChoice("gpu", (), {}, Skip.UNVERIFIABLE if bad else Skip.NO_DEVICES, bad)
    good_ids = {g.uuid: ids[g.uuid] for g in good}
    if len({i.model_id for i in good_ids.values()}) > 1:
        return DeviceChoice("gpu", (), {}, Skip.MIXED_MODELS, bad)
    return DeviceChoice("gpu", good, good_ids, None, bad)


def device_notes(worker: WorkerRow, *, cpu_workers: bool) -> dict[str, str]:
    """Why each device of ``worker`` is left out of epochs, or how it is sized when that is
    not by its own model: what ``scores --explain`` shows its operator."""
    notes: dict[str, str] = {}
    for uuid in sorted(worker.conflicted_gpus):
        notes[uuid] = "left out: another miner or worker claimed this UUID first"
    choice = challenge_devices(worker, cpu_workers=cpu_workers)
    listed = [g for g in worker.gpus if g.uuid not in worker.conflicted_gpus]
    if choice.skip is Skip.CPU_DISABLED:
        for g in listed:
            notes[g.uuid] = "left out: a CPU device, and challenge.cpu_workers is false"
    elif choice.skip is Skip.MIXED_MODELS:
        models = sorted({identify_gpu(g).model_id for g in listed})
        for g in listed:
            notes.setdefault(
                g.uuid,
                f"left out: the worker mixes models ({', '.join(models)}); run one worker per "
                "model",
            )
    for uuid, why in choice.unverifiable.items():
        notes[uuid] = f"left out, unverifiable: {why}"
    for uuid, identity in choice.identities.items():
        if identity.model_id == UNKNOWN:
            notes[uuid] = (
                "challenged as 'unknown': its name matches no catalogue model, or several; sized "
                "as the slowest catalogued card, credited at most the catalogue's largest peak"
            )
    return notes


def skip_reason(
    worker: WorkerRow, in_flight: Collection[WorkerRef], leased: Collection[WorkerRef]
) -> Skip | None:
    """Why ``worker`` is not challenged now, before its devices are looked at.

    ``leased`` are the leases this validator knows of (its own, and those its collected
    receipts show running). A worker its miner reports busy or leased *without* such a lease is
    challenged all the same (SPEC 5.5): otherwise a miner would pick the moment of every test by
    saying busy whenever it is not ready, and a listed worker kept busy would never be tested.
    Its refusal then counts as a missed challenge."""
    key = (worker.miner_hotkey, worker.worker_pubkey)
    if key in leased:
        return Skip.LEASED
    if not worker.online:
        return Skip.OFFLINE
    if worker.in_flight or key in in_flight:
        return Skip.IN_FLIGHT
    if not worker.endpoint:
        return Skip.NO_ENDPOINT
    return None


def size_for(
    choice: DeviceChoice, section: ChallengeSection, rates: ExpectedRates, round_trip_s: float
) -> Sizing:
    """Parameters and deadline of one worker's challenge."""
    model_id = choice.model_id
    cpu = choice.device_class == "cpu"
    return size_challenge(
        device_class=choice.device_class,
        model_id=CPU_MODEL if cpu else model_id,
        expected_flops=rates.expected_flops(CPU_MODEL if cpu else model_id),
        base=section.cpu if cpu else section.gpu,
        target_seconds=None if cpu else section.target_seconds,
        deadline_factor=section.deadline_factor,
        round_trip_s=min(max(0.0, round_trip_s), section.deadline_grace_s),
    )


class EpochPlanner:
    """Draws epoch start times and plans each epoch (see the module docstring)."""

    def __init__(self, section: ChallengeSection, rng: random.Random) -> None:
        self.section = section
        self.rng = rng

    def next_epoch_at(self, after: datetime) -> datetime:
        """When the epoch after one that started at ``after`` starts."""
        jitter = self.section.jitter
        factor = self.rng.uniform(1.0 - jitter, 1.0 + jitter)
        return after + timedelta(seconds=self.section.interval_s * factor)

    def first_epoch_at(self, now: datetime) -> datetime:
        """The first epoch after a start: a random share of one interval from ``now``, so
        validators started together do not challenge in step."""
        return now + timedelta(seconds=self.rng.uniform(0.0, self.section.interval_s))

    def plan(
        self,
        workers: Sequence[WorkerRow],
        *,
        rates: ExpectedRates,
        round_trips: Mapping[str, float] | None = None,
        in_flight: Collection[WorkerRef] = (),
        leased: Collection[WorkerRef] = (),
    ) -> EpochPlan:
        """Every challenge of an epoch starting now.

        ``in_flight`` are workers whose challenges from an earlier epoch are still running (they
        are never challenged twice at once); ``leased`` are the workers under a lease this
        validator knows of (its own pending or active ones, and those its receipts show running),
        skipped even before a poll shows them leased; a worker its miner calls busy or leased
        without one is challenged (see :func:`skip_reason`). ``round_trips`` is each
        miner's measured round trip in seconds (added to its deadlines, at most
        ``deadline_grace_s``). The challenges come in a random order, so no miner is always
        dispatched first."""
        trips = round_trips or {}
        skipped: dict[WorkerRef, Skip] = {}
        unverifiable: dict[tuple[str, str, str], str] = {}
        planned: list[PlannedChallenge] = []
        for worker in workers:
            key = (worker.miner_hotkey, worker.worker_pubkey)
            reason = skip_reason(worker, in_flight, leased)
            if reason is not None:
                skipped[key] = reason
                continue
            choice = challenge_devices(worker, cpu_workers=self.section.cpu_workers)
            for uuid, why in choice.unverifiable.items():
                unverifiable[(worker.miner_hotkey, worker.worker_pubkey, uuid)] = why
            if choice.skip is not None:
                skipped[key] = choice.skip
                continue
            assert worker.endpoint is not None
            sizing = size_for(choice, self.section, rates, trips.get(worker.miner_hotkey, 0.0))
            planned.append(
                PlannedChallenge(
                    miner_hotkey=worker.miner_hotkey,
                    miner_uid=worker.miner_uid,
                    endpoint=worker.endpoint,
                    worker_pubkey=worker.worker_pubkey,
                    gpu_uuids=tuple(g.uuid for g in choice.devices),
                    gpu_models={g.uuid: g.model for g in choice.devices},
                    identities=dict(choice.identities),
                    sizing=sizing,
                )
            )
        self.rng.shuffle(planned)
        return EpochPlan(tuple(planned), skipped, unverifiable)


def deadline_ms(sizing: Sizing) -> int:
    """The deadline as the wire's whole milliseconds (rounded up, never 0)."""
    return max(1, math.ceil(sizing.deadline_s * 1000))


__all__ = [
    "DeviceChoice",
    "EpochPlan",
    "EpochPlanner",
    "PlannedChallenge",
    "Skip",
    "challenge_devices",
    "deadline_ms",
    "device_notes",
    "identify_gpu",
    "is_cpu_device",
    "size_for",
    "skip_reason",
]
