"""Every call the validator's lease code makes to a miner, behind one small adapter.

The lease driver (:mod:`.manager`) and the renter API's job routes reach miners only through
:class:`MinerGateway`: lease start and stop, receipt countersigning and the six job requests.
Lease and job calls are worker-link messages carried to the worker of the lease by the miner's
one forwarding envelope (``MinerClient.forward``, ``POST /forward``); a worker's refusal of a
job request is raised as :class:`~neurons.validator.leasing.errors.JobRefused`.

A miner is reached at its current endpoint from the store (the matching offer's endpoint for
``start_lease``); a miner that serves no endpoint is a :class:`~byteleap.errors.LinkError`, as
is any failure to connect. A client lives for one call (or one artifact download).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

from byteleap.errors import Forbidden, LinkError, MalformedMessage, VerificationFailed
from byteleap.protocol.miner_api.receipts import Receipt, SignedReceipt
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobInfo,
    JobLogs,
    JobLogSlice,
    JobLogsQuery,
    JobRequest,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.jobs import JobRefused as WorkerRefused
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from neurons.common.miner_client import MinerClient
from neurons.validator.leasing.errors import JobRequestRefused

#: ``connect(miner_hotkey, base_url, timeout)`` -> a signed client of that miner
ConnectMiner = Callable[[str, str, float], MinerClient]
#: the miner's answer was refused: it is wrong, not unreachable (see :func:`peer_wrong`)
PEER_WRONG = (Forbidden, MalformedMessage, VerificationFailed)

_A = TypeVar("_A", JobAccepted, JobStatus, JobLogs, JobResult, ArtifactChunk)


def peer_wrong(exc: BaseException) -> bool:
    """Whether a failed call means the miner answered wrongly (403, a malformed answer, a bad
    signature) rather than that the call did not get through."""
    return isinstance(exc, PEER_WRONG)


def _request_id() -> str:
    return "r-" + secrets.token_hex(8)


class LeasedWorker(Protocol):
    @property
    def worker_pubkey(self) -> str: ...


class Endpoints(Protocol):
    async def miner_endpoint(self, miner_hotkey: str) -> str | None: ...

    async def lease(self, lease_id: str) -> LeasedWorker | None: ...


class JobLink:
    """One miner client, for the job requests of one lease on its worker."""

    def __init__(self, client: MinerClient, lease_id: str, worker_pubkey: str) -> None:
        self._client = client
        self.lease_id = lease_id
        self.worker_pubkey = worker_pubkey

    async def _ask(self, request: JobRequest, answer: type[_A]) -> _A:
        reply = await self._client.forward(self.worker_pubkey, request)
        if isinstance(reply, WorkerRefused):
            raise JobRequestRefused(reply.reason, reply.message or reply.reason.replace("_", " "))
        if not isinstance(reply, answer):  # pragma: no cover - MinerClient.forward checks types
            raise MalformedMessage(f"the miner answered {reply.type} to {request.type}")
        return reply

    async def submit(self, job_id: str, spec: JobSpec) -> JobInfo:
        submit = JobSubmit(
            request_id=_request_id(), lease_id=self.lease_id, job_id=job_id, spec=spec
        )
        return (await self._ask(submit, JobAccepted)).job

    async def status(self, job_id: str) -> JobInfo:
        query = JobStatusQuery(request_id=_request_id(), lease_id=self.lease_id, job_id=job_id)
        return (await self._ask(query, JobStatus)).job

    async def cancel(self, job_id: str) -> JobInfo:
        cancel = JobCancel(request_id=_request_id(), lease_id=self.lease_id, job_id=job_id)
        return (await self._ask(cancel, JobStatus)).job

    async def logs(
        self, job_id: str, *, stdout_offset: int, stderr_offset: int, limit: int
    ) -> JobLogSlice:
        query = JobLogsQuery(
            request_id=_request_id(),
            lease_id=self.lease_id,
            job_id=job_id,
            stdout_offset=stdout_offset,
            stderr_offset=stderr_offset,
            limit=limit,
        )
        return (await self._ask(query, JobLogs)).logs

    async def result(self, job_id: str) -> JobResult:
        query = JobResultQuery(request_id=_request_id(), lease_id=self.lease_id, job_id=job_id)
        return await self._ask(query, JobResult)

    async def artifact(self, job_id: str, name: str, *, offset: int, limit: int) -> ArtifactChunk:
        query = ArtifactQuery(
            request_id=_request_id(),
            lease_id=self.lease_id,
            job_id=job_id,
            name=name,
            offset=offset,
            limit=limit,
        )
        return await self._ask(query, ArtifactChunk)


class MinerGateway:
    """The miner calls of leases and their jobs (see the module docstring)."""

    def __init__(
        self, *, connect: ConnectMiner, endpoints: Endpoints, request_timeout_s: float
    ) -> None:
        self.connect = connect
        self.endpoints = endpoints
        self.request_timeout_s = request_timeout_s

    @contextlib.asynccontextmanager
    async def _client(
        self, miner_hotkey: str, lease_id: str, endpoint: str | None = None
    ) -> AsyncIterator[MinerClient]:
        if endpoint is None:
            endpoint = await self.endpoints.miner_endpoint(miner_hotkey)
        if not endpoint:
            raise LinkError(f"the miner of lease {lease_id} serves no endpoint now")
        client = self.connect(miner_hotkey, endpoint, self.request_timeout_s)
        try:
            yield client
        finally:
            await client.aclose()

    async def _worker(self, lease_id: str) -> str:
        lease = await self.endpoints.lease(lease_id)
        if lease is None:
            raise LinkError(f"lease {lease_id} is not in the store")
        return lease.worker_pubkey

    async def start_lease(
        self, miner_hotkey: str, endpoint: str, worker_pubkey: str, start: LeaseStart
    ) -> LeaseAck:
        """Forward ``start`` to the worker; its acknowledgement (or the miner's refusal)."""
        async with self._client(miner_hotkey, start.lease_id, endpoint) as client:
            answer = await client.forward(worker_pubkey, start)
        assert isinstance(answer, LeaseAck)  # MinerClient.forward checks the answer's type
        return answer

    async def stop_lease(self, miner_hotkey: str, lease_id: str, reason: str) -> bool:
        worker = await self._worker(lease_id)
        async with self._client(miner_hotkey, lease_id) as client:
            answer = await client.forward(worker, LeaseStop(lease_id=lease_id, reason=reason))
        assert isinstance(answer, LeaseAck)
        return answer.accepted

    async def countersign(self, miner_hotkey: str, receipt: Receipt) -> SignedReceipt:
        """The receipt signed by this validator and countersigned by the miner."""
        async with self._client(miner_hotkey, receipt.lease_id) as client:
            answer = await client.submit_receipt(receipt)
        return answer.signed

    @contextlib.asynccontextmanager
    async def jobs(
        self, miner_hotkey: str, lease_id: str, worker_pubkey: str
    ) -> AsyncIterator[JobLink]:
        """A link for the job requests of ``lease_id`` on ``worker_pubkey`` at its miner."""
        async with self._client(miner_hotkey, lease_id) as client:
            yield JobLink(client, lease_id, worker_pubkey)


__all__ = [
    "PEER_WRONG",
    "ConnectMiner",
    "Endpoints",
    "JobLink",
    "LeasedWorker",
    "MinerGateway",
    "peer_wrong",
]
