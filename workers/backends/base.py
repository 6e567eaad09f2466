"""The interface every compute backend implements.

A backend runs one challenge on one device and later opens rows of it. It keeps only the leaf
hashes of each stage (SPEC 4.3): :class:`byteleap.challenge.reference.ProverRun` is the record,
and opening rows recomputes them on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from byteleap.aliases import Clock
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import OpenedRow, ProverRun

#: polled between stages; returning True abandons the run with :class:`Abandoned`
ShouldStop = Callable[[], bool]


class Abandoned(Exception):
    """The run was stopped between stages (shutdown, lease start, cancelled challenge)."""


@dataclass(frozen=True)
class Device:
    """One device a backend can run challenges on. ``uuid`` is the identity bound into every
    challenge: the NVML UUID for a GPU, a per-worker identifier for the CPU."""

    uuid: str
    name: str
    kind: Literal["cpu", "cuda"]
    index: int | None = None
    memory_total_bytes: int | None = None


class ComputeBackend(Protocol):
    name: str

    def devices(self) -> list[Device]: ...

    def run(
        self,
        device: Device,
        binding: Binding,
        seed: bytes,
        params: ChallengeParams,
        *,
        clock: Clock,
        should_stop: ShouldStop | None = None,
    ) -> ProverRun:
        """Compute every stage on ``device``; raise ``byteleap.errors.WorkerFailure`` when the
        device cannot (out of memory, device lost) and :class:`Abandoned` when stopped."""
        ...

    def open(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> list[OpenedRow]:
        """Recompute ``rows`` of ``stage`` and return them with their Merkle paths."""
        ...

    def bare_gemm_seconds(self, device: Device, params: ChallengeParams, *, clock: Clock) -> float:
        """Time of one bare ``A @ B`` of the challenge's shape on ``device`` (for ``selftest``)."""
        ...
