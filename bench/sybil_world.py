"""The sybil simulation's world: its constants and attacks, the honest miners and the sybil's
claimed devices on one registry, and the tallies of their outcomes."""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from byteleap.errors import Outcome
from byteleap.hardware import CATALOGUE
from neurons.validator.store.records import GpuSnapshot, WorkerRow

TERA = 1e12
H100_ID = "h100-sxm"
#: what an H100 SXM's NVML reports (name, total MiB, compute capability)
H100_NAME, H100_MEMORY_MIB, H100_CAPABILITY = "NVIDIA H100 80GB HBM3", 81559, "9.0"


#: "an honest H100's speed": the catalogue's expected challenge throughput for the model
BASE_FLOPS = CATALOGUE[H100_ID].backend_flops


START = datetime(2026, 3, 1, tzinfo=UTC)


HONEST_MINERS = 20


HONEST_SPEED = (0.95, 1.10)  # x BASE_FLOPS, drawn per card


ROUND_TRIP_S = (0.02, 0.3)  # drawn per miner


DECOYS = 5


#: a decoy commits at this share of its deadline: as slow as it dares
DECOY_LATENESS = 0.97


STRATEGIES = ("queue", "rotate", "fixed", "parallel", "excuse")


FULL_SPEEDS = (1.0, 1.2, 1.33, 2.0, 4.0)


QUICK_SPEEDS = (1.0, 1.33, 4.0)


FULL_CLAIMS = (1, 10, 50, 200)


QUICK_CLAIMS = (1, 10)


#: from N >= SPREAD_MINERS claims on, the claims are also spread over this many miners
SPREAD_MINERS = 10


#: at s = 1.0, one card behind N claims earns at most this multiple of one honest card
TARGET_RATIO = 1.10


DEFAULT_SEED = 20260301


OUTCOME_CODES = (Outcome.VERIFIED, Outcome.TIMEOUT, Outcome.EXCUSED, Outcome.FRAUD)


OUTCOME_CODE = {outcome: i for i, outcome in enumerate(OUTCOME_CODES)}


@dataclass(frozen=True, slots=True)
class Attack:
    """One card of ``speed`` x an honest H100 behind ``claims`` claims on ``miners`` miners."""

    speed: float
    claims: int
    miners: int = 1
    #: the round trip the attacker's miners make the validator measure (slow answers to its
    #: polls); None: their true one. The deadline adds the measured one (at most
    #: ``deadline_grace_s``), the elapsed time the true one.
    shown_round_trip_s: float | None = None

    @property
    def label(self) -> str:
        shown = "" if self.shown_round_trip_s is None else f"-rt{self.shown_round_trip_s:g}"
        return f"s{self.speed:g}-n{self.claims}-m{self.miners}{shown}"


def attacks_for(speeds: Iterable[float], claims: Iterable[int]) -> list[Attack]:
    """Every speed x claim count, on one miner and (from 10 claims on) over 10 miners."""
    out = []
    for speed in speeds:
        for n in claims:
            out.append(Attack(speed, n, 1))
            if n >= SPREAD_MINERS:
                out.append(Attack(speed, n, SPREAD_MINERS))
    return out


@dataclass(slots=True)
class SimMiner:
    hotkey: str
    uid: int
    round_trip_s: float


@dataclass(slots=True)
class SimDevice:
    """One claimed GPU: its own worker on ``miner``."""

    miner: SimMiner
    worker: str
    uuid: str

    def row(self) -> WorkerRow:
        return WorkerRow(
            miner_hotkey=self.miner.hotkey,
            miner_uid=self.miner.uid,
            endpoint=f"http://{self.miner.hotkey}.invalid:8091",
            worker_pubkey=self.worker,
            state="idle",
            online=True,
            last_seen=START,
            gpus=(GpuSnapshot(self.uuid, H100_NAME, H100_MEMORY_MIB, H100_CAPABILITY),),
        )


class Registry:
    """Hands out unique miner uids, worker keys and GPU uuids."""

    def __init__(self) -> None:
        self.uids = 0
        self.devices = 0

    def miner(self, hotkey: str, round_trip_s: float) -> SimMiner:
        self.uids += 1
        return SimMiner(hotkey, self.uids, round_trip_s)

    def device(self, miner: SimMiner) -> SimDevice:
        self.devices += 1
        n = self.devices
        return SimDevice(miner, f"{n:064x}", f"GPU-{n:08x}-5b1e-4c0d-9a7e-{n:012x}")


@dataclass(slots=True)
class SimTally:
    """One device's outcomes over the day (index = epoch; throughput 0 unless verified)."""

    outcomes: bytearray = field(default_factory=bytearray)
    throughputs: array[float] = field(default_factory=lambda: array("d"))

    def add(self, outcome: Outcome, flops: float) -> None:
        self.outcomes.append(OUTCOME_CODE[outcome])
        self.throughputs.append(flops)


@dataclass(slots=True)
class Sybil:
    """An attack in flight: its devices, its honest reference, and a tally per strategy."""

    attack: Attack
    miners: list[SimMiner]
    devices: list[SimDevice]
    reference: SimDevice
    rng: dict[str, random.Random]
    dispatch_rng: random.Random
    tallies: dict[str, list[SimTally]]
    reference_tally: SimTally = field(default_factory=SimTally)
    #: the card's rate / the calibrated expected rate, in the latest epoch
    rate_over_expected: float = 0.0

    @property
    def rate(self) -> float:
        return self.attack.speed * BASE_FLOPS


def new_sybil(attack: Attack, registry: Registry, seed: int) -> Sybil:
    trips = random.Random(f"{seed}/{attack.label}/round-trips")
    miners = [
        registry.miner(f"sybil-{attack.label}-{i}", trips.uniform(*ROUND_TRIP_S))
        for i in range(attack.miners)
    ]
    devices = [registry.device(miners[i % attack.miners]) for i in range(attack.claims)]
    # the reference's link is the attacker's average one, so the ratio measures sharing only
    mean_trip = math.fsum(m.round_trip_s for m in miners) / len(miners)
    reference = registry.device(registry.miner(f"honest-{attack.label}", mean_trip))
    return Sybil(
        attack=attack,
        miners=miners,
        devices=devices,
        reference=reference,
        rng={s: random.Random(f"{seed}/{attack.label}/{s}") for s in STRATEGIES},
        dispatch_rng=random.Random(f"{seed}/{attack.label}/dispatch"),
        tallies={s: [SimTally() for _ in devices] for s in STRATEGIES},
    )
