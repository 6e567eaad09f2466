"""Which workers to challenge now, and how hard: the round planner.

Pure and synchronous, in the shape of a state machine: :meth:`ChallengePlanner.plan` takes the
workers the store knows, the time and what is already in flight, and returns the challenges to
dispatch plus why every other worker was skipped. The clock and the random source are passed in,
so every decision can be replayed in a test.

Sizing (SPEC 4.1):

- A worker that lists a ``CPU-`` device runs the NumPy backend, which can run only that device
  (``workers/backends/select.py``). Its CPU devices get ``challenge.cpu`` exactly as configured.
- Every other worker gets ``challenge.gpu`` on all of its GPUs that no one claimed first, with the
  number of stages sized so that the *slowest* claimed model needs ``target_seconds`` at
  ``expected_peak_fraction`` of its dense TF32 peak (the GPUs of a worker run the same parameters
  side by side, so the slowest one sets the pace).
- The deadline is ``deadline_factor x expected seconds + deadline_grace_s``.

Spreading the load: a worker falls due ``interval_s`` after its last challenge plus a random
``0..jitter x interval_s``; a worker never challenged falls due a random ``0..jitter x
interval_s`` after the planner first sees it. The random offset is drawn once per worker and
last challenge, so asking again does not move it.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from byteleap.challenge.params import ChallengeParams, stages_for_target
from byteleap.challenge.timing import peak_for
from byteleap.config.validator import ChallengeSection
from neurons.validator.store.records import GpuSnapshot, WorkerRow

#: UUID prefix of the pseudo-device a NumPy (CPU) worker advertises
CPU_UUID_PREFIX = "CPU-"
#: the protocol's largest deadline (``DeadlineMs``)
MAX_DEADLINE_S = 3600.0

DeviceClass = Literal["cpu", "gpu"]
#: a worker's identity: (miner hotkey, worker public key hex)
WorkerKey = tuple[str, str]


class Skip(enum.StrEnum):
    """Why a worker is not challenged in this round."""

    LEASED = "leased"
    BUSY = "busy"
    OFFLINE = "offline"
    IN_FLIGHT = "in_flight"
    NO_ENDPOINT = "no_endpoint"
    NO_DEVICES = "no_devices"  # none listed, or every one is claimed by someone earlier
    NOT_DUE = "not_due"
    AT_CAPACITY = "at_capacity"  # due, but challenge.max_concurrency are in flight


@dataclass(frozen=True, slots=True)
class Sizing:
    """Parameters and timing of one challenge."""

    device_class: DeviceClass
    params: ChallengeParams
    #: seconds the challenge should take on the claimed hardware
    expected_s: float
    #: seconds from dispatch after which a commit is a timeout
    deadline_s: float


@dataclass(frozen=True, slots=True)
class PlannedChallenge:
    """One challenge to dispatch: a worker, the devices to prove, and the parameters."""

    miner_hotkey: str
    miner_uid: int
    endpoint: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    #: the model each device claimed (for the throughput check)
    gpu_models: Mapping[str, str]
    sizing: Sizing
    #: when the worker fell due (for ordering and logs)
    due_at: datetime

    @property
    def key(self) -> WorkerKey:
        return (self.miner_hotkey, self.worker_pubkey)

    @property
    def params(self) -> ChallengeParams:
        return self.sizing.params


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of one planning step."""

    challenges: tuple[PlannedChallenge, ...]
    skipped: Mapping[WorkerKey, Skip] = field(default_factory=dict)


def is_cpu_device(gpu: GpuSnapshot) -> bool:
    return gpu.uuid.startswith(CPU_UUID_PREFIX)


def challenge_devices(worker: WorkerRow) -> tuple[DeviceClass, tuple[GpuSnapshot, ...]]:
    """The devices of ``worker`` to challenge and their class.

    GPUs another claimant owns (``conflicted_gpus``) are never challenged: a verdict on them would
    be credited to nobody, and a challenge would only load the rightful owner's hardware."""
    usable = tuple(g for g in worker.gpus if g.uuid not in worker.conflicted_gpus)
    cpus = tuple(g for g in usable if is_cpu_device(g))
    if cpus:
        return "cpu", cpus
    return "gpu", usable


def deadline_for(expected_s: float, section: ChallengeSection) -> float:
    """``deadline_factor x expected + grace``, capped at the protocol's largest deadline."""
    return min(MAX_DEADLINE_S, section.deadline_factor * expected_s + section.deadline_grace_s)


def size_challenge(
    device_class: DeviceClass, models: Iterable[str], section: ChallengeSection
) -> Sizing:
    """Parameters, expected time and deadline for devices of ``device_class`` and ``models``."""
    if device_class == "cpu":
        params = section.cpu
        expected = params.flops / section.cpu_expected_flops
    else:
        peaks = [peak_for(model) for model in models]
        if not peaks:
            raise ValueError("a GPU challenge needs at least one GPU")
        rate = section.expected_peak_fraction * min(peaks)
        params = stages_for_target(section.gpu, rate, section.target_seconds)
        expected = params.flops / rate
    return Sizing(device_class, params, expected, deadline_for(expected, section))


class ChallengePlanner:
    """Decides, at each step, which idle workers to challenge (see the module docstring)."""

    def __init__(self, section: ChallengeSection, rng: random.Random) -> None:
        self.section = section
        self.rng = rng
        #: worker -> (the last challenge the offset belongs to, the offset in seconds)
        self._offsets: dict[WorkerKey, tuple[datetime | None, float]] = {}
        #: worker -> when the planner first saw it (for workers never challenged)
        self._first_seen: dict[WorkerKey, datetime] = {}

    def _offset(self, key: WorkerKey, last: datetime | None) -> float:
        known = self._offsets.get(key)
        if known is not None and known[0] == last:
            return known[1]
        offset = self.rng.uniform(0.0, self.section.jitter * self.section.interval_s)
        self._offsets[key] = (last, offset)
        return offset

    def due_at(self, worker: WorkerRow, now: datetime) -> datetime:
        """When ``worker`` falls due (remembering first sightings and jitter draws)."""
        key = (worker.miner_hotkey, worker.worker_pubkey)
        offset = timedelta(seconds=self._offset(key, worker.last_challenge_at))
        if worker.last_challenge_at is None:
            first = self._first_seen.setdefault(key, now)
            return first + offset
        return worker.last_challenge_at + timedelta(seconds=self.section.interval_s) + offset

    def _skip_reason(
        self,
        worker: WorkerRow,
        busy: Collection[WorkerKey],
        leased: Collection[WorkerKey] = (),
    ) -> Skip | None:
        key = (worker.miner_hotkey, worker.worker_pubkey)
        if worker.state == "leased" or key in leased:
            return Skip.LEASED
        if not worker.online:
            return Skip.OFFLINE
        if worker.in_flight or (worker.miner_hotkey, worker.worker_pubkey) in busy:
            return Skip.IN_FLIGHT
        if worker.state == "busy":
            return Skip.BUSY
        if not worker.endpoint:
            return Skip.NO_ENDPOINT
        if not challenge_devices(worker)[1]:
            return Skip.NO_DEVICES
        return None

    def plan(
        self,
        now: datetime,
        workers: Sequence[WorkerRow],
        *,
        in_flight: Collection[WorkerKey] = (),
        leased: Collection[WorkerKey] = (),
    ) -> Plan:
        """The challenges to dispatch at ``now``.

        ``in_flight`` are the workers whose challenges this process is running (they count
        against ``max_concurrency`` and are never challenged twice at once). ``leased`` are the
        workers our own pending or active leases hold: skipped even before a poll shows them
        leased, so no challenge races a lease that just started."""
        skipped: dict[WorkerKey, Skip] = {}
        due: list[tuple[datetime, WorkerKey, WorkerRow]] = []
        seen: set[WorkerKey] = set()
        for worker in workers:
            key = (worker.miner_hotkey, worker.worker_pubkey)
            seen.add(key)
            reason = self._skip_reason(worker, in_flight, leased)
            if reason is not None:
                skipped[key] = reason
                continue
            at = self.due_at(worker, now)
            if at > now:
                skipped[key] = Skip.NOT_DUE
                continue
            due.append((at, key, worker))
        self._forget(seen)

        capacity = max(0, self.section.max_concurrency - len(in_flight))
        due.sort(key=lambda item: (item[0], item[1]))
        planned: list[PlannedChallenge] = []
        for at, key, worker in due:
            if len(planned) >= capacity:
                skipped[key] = Skip.AT_CAPACITY
                continue
            planned.append(self._planned(worker, at))
        return Plan(tuple(planned), skipped)

    def _planned(self, worker: WorkerRow, due_at: datetime) -> PlannedChallenge:
        device_class, devices = challenge_devices(worker)
        sizing = size_challenge(device_class, (g.model for g in devices), self.section)
        assert worker.endpoint is not None
        return PlannedChallenge(
            miner_hotkey=worker.miner_hotkey,
            miner_uid=worker.miner_uid,
            endpoint=worker.endpoint,
            worker_pubkey=worker.worker_pubkey,
            gpu_uuids=tuple(g.uuid for g in devices),
            gpu_models={g.uuid: g.model for g in devices},
            sizing=sizing,
            due_at=due_at,
        )

    def _forget(self, seen: set[WorkerKey]) -> None:
        """Drop the memory of workers the store no longer lists (bounded state)."""
        for table in (self._offsets, self._first_seen):
            for key in [k for k in table if k not in seen]:
                del table[key]


def expected_stages(section: ChallengeSection, model: str) -> int:
    """Stages a GPU challenge for ``model`` gets (for documentation and the CLI)."""
    return size_challenge("gpu", [model], section).params.stages


def deadline_ms(sizing: Sizing) -> int:
    """The deadline as the wire's whole milliseconds (rounded up, never 0)."""
    return max(1, math.ceil(sizing.deadline_s * 1000))


__all__ = [
    "CPU_UUID_PREFIX",
    "ChallengePlanner",
    "DeviceClass",
    "Plan",
    "PlannedChallenge",
    "Sizing",
    "Skip",
    "WorkerKey",
    "challenge_devices",
    "deadline_for",
    "deadline_ms",
    "expected_stages",
    "is_cpu_device",
    "size_challenge",
]
