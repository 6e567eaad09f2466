"""The driver of the miner's :class:`~byteleap.sessions.miner_leases.LeaseTable`.

The table decides; this service carries out what it says: it asks the worker (through the
hub's :class:`~neurons.miner.ports.WorkerDirectory`) to start or stop a lease, feeds the answer
back as an event, writes leases through to the miner's SQLite store when there is one, and
relays validators' messages to the worker of their lease. The clock is read here, once per
event, and passed in.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from byteleap.protocol.miner_api.forward import ForwardRequest, ForwardResponse, LeaseStatusResponse
from byteleap.protocol.worker_link.jobs import JobRefused, JobReply, JobRequest, JobSubmit
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.sessions.lease_table_events import (
    Answer,
    ForwardRequested,
    LeaseTableInstruction,
    Persist,
    RefuseJob,
    Relay,
    StartAcked,
    StartAtWorker,
    StartRequested,
    StopAcked,
    StopAtWorker,
    StopRequested,
    TableTick,
    WorkerLost,
)
from byteleap.sessions.miner_leases import LeaseTable
from neurons.miner.ports import WorkerDirectory
from neurons.miner.store import MinerStore


class LeaseService:
    """Leases and the messages relayed under them, for the routes of the validator API."""

    def __init__(
        self,
        table: LeaseTable,
        workers: WorkerDirectory,
        *,
        store: MinerStore | None,
        clock: Callable[[], float],
        request_timeout: float,
    ) -> None:
        self.table = table
        self.workers = workers
        self.store = store
        self.clock = clock
        self.request_timeout = request_timeout

    def leased(self, worker_pubkey: str) -> bool:
        return self.table.leased(worker_pubkey, self.clock())

    def tick(self) -> None:
        self.table.handle(TableTick(self.clock()))

    def status(self, lease_id: str) -> LeaseStatusResponse:
        record = self.table.get(lease_id, self.clock())
        if record is None:
            return LeaseStatusResponse(lease_id=lease_id, state="unknown")
        return LeaseStatusResponse(
            lease_id=lease_id,
            state=record.state,
            worker_pubkey=record.worker_pubkey,
            gpu_uuids=record.gpu_uuids,
            ends_at=record.ends_at,
        )

    async def start(self, caller: str, worker_pubkey: str, start: LeaseStart) -> LeaseAck:
        """Start ``start`` on the worker for ``caller``: the worker's acknowledgement, or the
        miner's own answer (an idempotent retry, an end in the past)."""
        event = StartRequested(
            self.clock(),
            caller,
            start.lease_id,
            worker_pubkey,
            tuple(start.gpu_uuids),
            start.ends_at,
        )
        return await self._carry_out(self.table.handle(event), start)

    async def forward(self, caller: str, envelope: ForwardRequest) -> ForwardResponse:
        """Relay the envelope's message to the worker of ``caller``'s lease; its answer."""
        worker, message = envelope.worker_pubkey, envelope.message
        answer: LeaseAck | JobReply
        if isinstance(message, LeaseStart):
            answer = await self.start(caller, worker, message)
        elif isinstance(message, LeaseStop):
            answer = await self.stop(caller, message, worker)
        else:
            answer = await self.job(caller, worker, message)
        return ForwardResponse(worker_pubkey=worker, lease_id=envelope.lease_id, message=answer)

    async def stop(self, caller: str, stop: LeaseStop, worker_pubkey: str) -> LeaseAck:
        """Stop one of ``caller``'s leases at its worker; the lease ends at the miner either way."""
        event = StopRequested(self.clock(), caller, stop.lease_id, stop.reason, worker_pubkey)
        return await self._carry_out(self.table.handle(event), stop)

    async def job(self, caller: str, worker_pubkey: str, request: JobRequest) -> JobReply:
        """Relay a job request to the worker of ``caller``'s lease; its answer or the refusal.

        The miner owns the ``request_id`` on its link (it routes the answer by it): the request
        is relayed under a fresh one and the answer carries the caller's again."""
        event = ForwardRequested(
            self.clock(),
            caller,
            request.lease_id,
            worker_pubkey,
            submit=isinstance(request, JobSubmit),
        )
        (decision,) = self.table.handle(event)
        if isinstance(decision, RefuseJob):
            return JobRefused(
                request_id=request.request_id,
                lease_id=request.lease_id,
                job_id=request.job_id,
                reason=decision.refusal,
                message=decision.reason,
            )
        assert isinstance(decision, Relay)
        relayed = request.model_copy(update={"request_id": "r-" + os.urandom(8).hex()})
        reply = await self.workers.job(
            bytes.fromhex(decision.worker_pubkey), relayed, timeout=self.request_timeout
        )
        return reply.model_copy(update={"request_id": request.request_id})

    async def _carry_out(
        self, instructions: list[LeaseTableInstruction], message: LeaseStart | LeaseStop
    ) -> LeaseAck:
        """Carry out the table's instructions (and those its answers call for) to its answer."""
        pending = list(instructions)
        while pending:
            match pending.pop(0):
                case StartAtWorker(lease_id=lease_id, worker_pubkey=worker):
                    assert isinstance(message, LeaseStart)
                    ack = await self._ask(lease_id, worker, message)
                    pending += self.table.handle(
                        StartAcked(self.clock(), lease_id, ack.accepted, ack.reason)
                    )
                case StopAtWorker(lease_id=lease_id, worker_pubkey=worker):
                    assert isinstance(message, LeaseStop)
                    ack = await self._ask(lease_id, worker, message)
                    pending += self.table.handle(
                        StopAcked(self.clock(), lease_id, ack.accepted, ack.reason)
                    )
                case Persist(record=record):
                    if self.store is not None:
                        await self.store.save_lease(record)
                case Answer(lease_id=lease_id, accepted=accepted, reason=reason):
                    return LeaseAck(lease_id=lease_id, accepted=accepted, reason=reason)
        raise RuntimeError(f"the lease table gave no answer for {message.lease_id}")

    async def _ask(self, lease_id: str, worker: str, message: LeaseStart | LeaseStop) -> LeaseAck:
        key = bytes.fromhex(worker)
        try:
            if isinstance(message, LeaseStart):
                return await self.workers.lease_start(key, message, timeout=self.request_timeout)
            return await self.workers.lease_stop(key, message, timeout=self.request_timeout)
        except BaseException:
            self.table.handle(WorkerLost(self.clock(), lease_id))
            raise


__all__ = ["LeaseService"]
