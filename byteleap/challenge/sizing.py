"""How hard a challenge is and when it is late: calibrated expected throughput (SPEC 4.5).

One physical card must not be able to answer two claims. Every claim of an epoch is dispatched at
once, so a card behind two claims finishes the second one about twice the expected time after
dispatch; the deadline is at most 1.5 x the expected time plus the miner's round trip, so that
second commit is late. This only holds if the *expected* time is close to what real cards of the
model take, so it is calibrated:

- **Catalogue first.** A model's expected throughput starts at the catalogue's figure for our
  backend (``GpuModel.backend_flops``); a CPU device's at ``challenge.cpu_expected_flops``.
- **Then the network.** Once ``min_miners`` different miners have each verified at least
  ``min_samples`` challenges of the model in the calibration window, the expected throughput is
  a low percentile of their *per-miner medians*. One vote per miner keeps one operator with many
  slow claims from dragging the figure down on its own; the percentile is low so that the slower
  honest cards of a model still meet the deadline.
- **Clamped.** Never below ``floor`` x the catalogue figure, never above the model's fastest
  exact format peak (no honest card is faster). The floor is what bounds a coalition of
  deliberately slow "decoy" miners: they can lengthen everyone's deadlines only that far, and
  with the default 0.9 a card must still be about 1.3 x faster than the catalogue figure before
  it fits two claims into one deadline (``bench/sybil.py`` replays exactly this).
- **Unknown models** (a name that matches no model, or several) are not calibrated: they are a
  mix of anything. They are sized at ``unknown_flops`` (the slowest catalogued card by default),
  and the throughput credited to them is capped at the catalogue maximum.

Everything here is pure: the samples and the catalogue come in, numbers go out.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from byteleap.challenge.params import ChallengeParams, stages_for_target
from byteleap.hardware import (
    CATALOGUE,
    CPU_MODEL,
    UNKNOWN,
    DeviceIdentity,
    max_dense_tf32,
    max_exact_peak,
    slowest_backend_flops,
)

TERA = 1e12
#: a generous cap on a CPU device's throughput, far above any CPU's FP32 rate
CPU_PEAK_FLOPS = 20 * TERA
#: the protocol's largest deadline (``DeadlineMs``)
MAX_DEADLINE_S = 3600.0


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """The knobs of :func:`calibrate` (``challenge.*`` in the validator's config)."""

    cpu_expected_flops: float
    unknown_flops: float | None = None
    percentile: float = 25.0
    min_miners: int = 3
    floor: float = 0.9
    #: verified challenges a miner needs in the window to vote
    min_samples: int = 1


@dataclass(frozen=True, slots=True)
class ModelRate:
    """The expected throughput of one model, and where it came from."""

    model_id: str
    #: FLOP/s a challenge is sized for and its deadline is computed from
    expected_flops: float
    #: the catalogue's figure (or the configured CPU / unknown figure)
    catalogue_flops: float
    #: miners whose verified challenges of this model were counted
    miners: int = 0
    #: "catalogue", "network" or "floor" (the network's figure was below the floor)
    source: str = "catalogue"


@dataclass(frozen=True, slots=True)
class ExpectedRates:
    """Expected throughput per model id, with the catalogue's figures as the fallback."""

    rates: Mapping[str, ModelRate]
    settings: CalibrationSettings

    def rate(self, model_id: str) -> ModelRate:
        known = self.rates.get(model_id)
        if known is not None:
            return known
        base = catalogue_rate(model_id, self.settings)
        return ModelRate(model_id, base, base)

    def expected_flops(self, model_id: str) -> float:
        return self.rate(model_id).expected_flops


def catalogue_rate(model_id: str, settings: CalibrationSettings) -> float:
    """The figure a model starts from before the network has verified enough of it."""
    if model_id == CPU_MODEL:
        return settings.cpu_expected_flops
    model = CATALOGUE.get(model_id)
    if model is None:
        return unknown_rate(settings)
    return model.backend_flops


def unknown_rate(settings: CalibrationSettings) -> float:
    """What a GPU of unknown model is sized at: a slow card."""
    if settings.unknown_flops is not None:
        return settings.unknown_flops
    return slowest_backend_flops()


def rate_ceiling(model_id: str) -> float:
    """No honest device of ``model_id`` is faster than this."""
    if model_id == CPU_MODEL:
        return CPU_PEAK_FLOPS
    model = CATALOGUE.get(model_id)
    return max_exact_peak() if model is None else model.exact_peak_flops


def low_percentile(values: Iterable[float], percentile: float) -> float:
    """Nearest-rank percentile (no interpolation: the figure is one miner's real median)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(percentile / 100.0 * len(ordered)))
    return ordered[rank - 1]


def calibrate(
    samples: Iterable[tuple[str, str, float]], settings: CalibrationSettings
) -> ExpectedRates:
    """Expected throughput per model from ``(miner_hotkey, model_id, verified FLOP/s)`` samples.

    Unknown models are never calibrated (see the module docstring)."""
    per_model: dict[str, dict[str, list[float]]] = {}
    for miner, model_id, flops in samples:
        if model_id == UNKNOWN or not (math.isfinite(flops) and flops > 0):
            continue
        per_model.setdefault(model_id, {}).setdefault(miner, []).append(flops)
    rates: dict[str, ModelRate] = {}
    for model_id, everyone in per_model.items():
        by_miner = {m: v for m, v in everyone.items() if len(v) >= settings.min_samples}
        base = catalogue_rate(model_id, settings)
        if len(by_miner) < settings.min_miners:
            rates[model_id] = ModelRate(model_id, base, base, len(by_miner), "catalogue")
            continue
        medians = [float(statistics.median(v)) for v in by_miner.values()]
        network = low_percentile(medians, settings.percentile)
        floor = settings.floor * base
        expected = min(max(network, floor), rate_ceiling(model_id))
        source = "floor" if network < floor else "network"
        rates[model_id] = ModelRate(model_id, expected, base, len(by_miner), source)
    return ExpectedRates(rates, settings)


@dataclass
class SampleWindow:
    """The verified throughputs that calibrate, kept in memory: the newest ``per_miner`` of each
    (model, miner) within ``window``.

    A whole day of a large subnet is tens of millions of verified rows; reading them back from
    the database before every epoch would cost more than the epoch. The validator seeds this
    once at start-up and adds every verdict it closes. A miner's median needs no more than its
    newest few dozen samples, so memory stays bounded by models x miners x ``per_miner``."""

    window: timedelta
    per_miner: int = 64
    _samples: dict[tuple[str, str], deque[tuple[datetime, float]]] = field(default_factory=dict)

    def add(self, at: datetime, miner_hotkey: str, model_id: str, flops: float) -> None:
        if model_id == UNKNOWN or not (math.isfinite(flops) and flops > 0):
            return
        key = (model_id, miner_hotkey)
        kept = self._samples.get(key)
        if kept is None:
            kept = self._samples[key] = deque(maxlen=self.per_miner)
        kept.append((at, flops))

    def samples(self, now: datetime) -> Iterator[tuple[str, str, float]]:
        """``(miner, model_id, flops)`` of every kept sample newer than ``now - window``; older
        ones are dropped."""
        cutoff = now - self.window
        for key in list(self._samples):
            kept = self._samples[key]
            while kept and kept[0][0] < cutoff:
                kept.popleft()
            if not kept:
                del self._samples[key]
                continue
            model_id, miner = key
            for _, flops in kept:
                yield miner, model_id, flops

    def __len__(self) -> int:
        return sum(len(v) for v in self._samples.values())


# --------------------------------------------------------------------------- one challenge


@dataclass(frozen=True, slots=True)
class Sizing:
    """Parameters and timing of one challenge."""

    device_class: str  # "cpu" or "gpu"
    model_id: str
    params: ChallengeParams
    #: FLOP/s the challenge was sized for
    expected_flops: float
    #: seconds the challenge should take on the claimed hardware
    expected_s: float
    #: seconds of round trip added to the deadline
    round_trip_s: float
    #: seconds from dispatch after which a commit is a timeout
    deadline_s: float


def size_challenge(
    *,
    device_class: str,
    model_id: str,
    expected_flops: float,
    base: ChallengeParams,
    target_seconds: float | None,
    deadline_factor: float,
    round_trip_s: float,
) -> Sizing:
    """Stages sized to ``target_seconds`` at ``expected_flops`` (``None``: ``base`` as given, the
    CPU class), and the deadline ``deadline_factor x expected + round_trip_s``."""
    if expected_flops <= 0:
        raise ValueError("expected_flops must be positive")
    params = (
        base if target_seconds is None else stages_for_target(base, expected_flops, target_seconds)
    )
    expected_s = params.flops / expected_flops
    deadline = min(MAX_DEADLINE_S, deadline_factor * expected_s + max(0.0, round_trip_s))
    return Sizing(
        device_class, model_id, params, expected_flops, expected_s, round_trip_s, deadline
    )


def impossible_limit(identity: DeviceIdentity, factor: float) -> float:
    """Throughput above which a commit is physically impossible for the claimed device: the
    fastest exact format's peak of the model (every catalogued model's highest for an unknown
    one), times ``factor``."""
    return factor * rate_ceiling(identity.model_id)


def credited_throughput(identity: DeviceIdentity, measured: float) -> float:
    """The throughput that scores: an unknown model's is capped at the catalogue's largest dense
    TF32 peak, so a name nobody can check earns no more than the best card we know."""
    if identity.model_id == UNKNOWN:
        return min(measured, max_dense_tf32())
    return measured


__all__ = [
    "CPU_PEAK_FLOPS",
    "MAX_DEADLINE_S",
    "CalibrationSettings",
    "ExpectedRates",
    "ModelRate",
    "SampleWindow",
    "Sizing",
    "calibrate",
    "catalogue_rate",
    "credited_throughput",
    "impossible_limit",
    "low_percentile",
    "rate_ceiling",
    "size_challenge",
    "unknown_rate",
]
