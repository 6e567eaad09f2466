"""Runs a dispatched challenge on every requested GPU at once and signs the commitments.

Each GPU runs in its own thread (NumPy and CuPy release the GIL), so a multi-GPU host proves all
its GPUs concurrently. Finished runs are kept, keyed by challenge and GPU, for the reveal.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from byteleap.challenge.params import Binding
from byteleap.challenge.reference import ProverRun
from byteleap.crypto import WorkerKey
from byteleap.errors import ByteLeapError, MalformedMessage, WorkerFailure
from byteleap.protocol.worker_link.challenges import (
    ChallengeDispatch,
    GpuCommit,
    RevealRequest,
    RowOpening,
)
from byteleap.sessions.worker_agent import MAX_KEPT_RUNS
from workers.backends.base import Abandoned, ComputeBackend, Device


class ChallengeExecutor:
    def __init__(
        self,
        backend: ComputeBackend,
        key: WorkerKey,
        *,
        clock: Callable[[], float],
        keep: int = MAX_KEPT_RUNS,
    ) -> None:
        self.backend = backend
        self.key = key
        self.clock = clock
        self.keep = keep
        self._stop = threading.Event()
        self._runs: dict[str, dict[str, ProverRun]] = {}

    def devices(self) -> dict[str, Device]:
        return {device.uuid: device for device in self.backend.devices()}

    def stop(self) -> None:
        """Abandon the running challenge at the next stage boundary."""
        self._stop.set()

    async def run(self, dispatch: ChallengeDispatch, miner_hotkey: str) -> tuple[GpuCommit, ...]:
        """Compute and sign; raises Abandoned, WorkerFailure or MalformedMessage."""
        self._stop.clear()
        devices = self.devices()
        missing = [uuid for uuid in dispatch.gpu_uuids if uuid not in devices]
        if missing:
            raise MalformedMessage(f"no device {', '.join(missing)} on this worker")

        def one(uuid: str) -> ProverRun:
            binding = Binding(
                miner_hotkey=miner_hotkey, worker_pubkey=self.key.public_key, gpu_uuid=uuid
            )
            try:
                return self.backend.run(
                    devices[uuid],
                    binding,
                    dispatch.seed,
                    dispatch.params,
                    clock=self.clock,
                    should_stop=self._stop.is_set,
                )
            except (ByteLeapError, Abandoned):
                raise
            except MemoryError as exc:
                raise WorkerFailure(f"out of memory on {uuid}") from exc

        runs = await asyncio.gather(*(asyncio.to_thread(one, uuid) for uuid in dispatch.gpu_uuids))
        self._runs[dispatch.challenge_id] = dict(zip(dispatch.gpu_uuids, runs, strict=True))
        while len(self._runs) > self.keep:
            self._runs.pop(next(iter(self._runs)))
        return tuple(
            GpuCommit.create(
                self.key,
                dispatch.challenge_id,
                uuid,
                run.roots,
                [seconds * 1e3 for seconds in run.stage_seconds],
            )
            for uuid, run in zip(dispatch.gpu_uuids, runs, strict=True)
        )

    async def open(self, request: RevealRequest) -> tuple[RowOpening, ...]:
        runs = self._runs.get(request.challenge_id)
        if runs is None:
            raise WorkerFailure(f"challenge {request.challenge_id} is no longer kept")
        devices = self.devices()

        def one(uuid: str, stage: int, rows: list[int]) -> list[RowOpening]:
            opened = self.backend.open(devices[uuid], runs[uuid], stage, rows)
            return [
                RowOpening(
                    gpu_uuid=uuid,
                    stage=o.stage,
                    row=o.row,
                    values=o.values,
                    proof=b"".join(o.proof),
                )
                for o in opened
            ]

        parts = await asyncio.gather(
            *(asyncio.to_thread(one, o.gpu_uuid, o.stage, o.rows) for o in request.openings)
        )
        return tuple(opening for part in parts for opening in part)
